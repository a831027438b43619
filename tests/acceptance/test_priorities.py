"""Priorities hold under load: a flooded low lane does not delay a critical job."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from core.settings import KafkaSettings
from tests.acceptance.test_walking_skeleton import once_job
from tests.support.stack import Stack
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually
from topics.producer import durable_producer

pytestmark = pytest.mark.services

FLOOD = 300


async def test_a_critical_job_runs_while_the_low_lane_is_flooded(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    flood = f"{user_id}-low"
    target.answer_slowly(flood, 3.0)  # 300 slow jobs keep the low lane busy for ~15 s
    low_ids = [f"0000{i:04d}-aaaa-4bbb-8ccc-{user_id[-12:].rjust(12, '0')}" for i in range(FLOOD)]
    creates = [
        {
            "type": "create",
            "job": {**once_job(user_id, target.url(flood), 1, priority="low"), "job_id": i},
        }
        for i in low_ids
    ]
    await produce_all(stack, creates)

    async def flood_fired() -> bool:
        # Fired: queued, or already claimed (a worker claims a second before the instant,
        # and the API then shows the job running).
        job = await stack.job(low_ids[-1])
        return job is not None and job["status"] in ("queued", "running")

    await eventually(flood_fired, 30, what="the flood to fire")

    critical = once_job(user_id, target.url(user_id), 1, priority="critical")
    job_id = (await stack.submit(critical))["job_id"]
    await stack.wait_status(job_id, "succeeded")
    unfinished = await stack.pool.fetchval(
        "SELECT count(*) FROM kjs_executions WHERE job_id = ANY($1::uuid[])"
        " AND status IN ('queued', 'running')",
        low_ids,
    )
    assert unfinished > FLOOD // 2, "the low lane was not flooded when the critical job ran"
    (hit,) = target.calls(user_id)
    scheduled = datetime.fromisoformat(critical["schedule"]["at"])
    assert hit.at - scheduled < timedelta(seconds=30)
    # Progress, not a timing threshold: the critical job ran ahead of most of the queue.
    # Every low job was due before it, so a lane that served them in order (or a critical job
    # queued behind them) would have started all of them first; the target's own clock says
    # how many it had been called for when the critical call arrived.
    low_due = [datetime.fromisoformat(c["job"]["schedule"]["at"]) for c in creates]
    assert max(low_due) < scheduled
    started_before = [h for h in target.calls(flood) if h.at < hit.at]
    assert len(started_before) < FLOOD // 2, (
        f"{len(started_before)} of {FLOOD} earlier low jobs ran before the critical one"
    )

    # Give the rest of the session's tests the low lane back.
    await produce_all(stack, [{"type": "cancel", "user_id": user_id, "job_id": i} for i in low_ids])


async def produce_all(stack: Stack, commands: list[dict[str, Any]]) -> None:
    """Many commands through one producer, sent without waiting for each acknowledgement
    (the stack's helper waits for each)."""
    producer = durable_producer(
        KafkaSettings(kafka_bootstrap=stack.env["KJS_KAFKA_BOOTSTRAP"]), linger_ms=5
    )
    await producer.start()
    try:
        acks = [
            await producer.send(
                stack.catalog.commands.name,
                json.dumps(c).encode(),
                key=c.get("user_id", c.get("job", {}).get("user_id", "")).encode(),
            )
            for c in commands
        ]
        for ack in acks:
            await ack
    finally:
        await producer.stop()

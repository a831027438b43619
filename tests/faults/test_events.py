"""``jobs.events`` (KJS_EVENTS=on) against real ``kjs`` processes: a job's whole life is the
exact sequence of its events, and a scheduler killed with ``kill -9`` mid-burst loses no
committed change's event and publishes none of a rolled-back one (checked against Postgres).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.v1.state_events import StateEvent
from tests.faults.conftest import Cluster, kill, running_stack
from tests.support.stack import Stack
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]

SECRET = "s3cr3t-token-value"


async def published(stack: Stack) -> list[tuple[bytes, bytes]]:
    """Every record of ``jobs.events`` once the outbox is empty (every committed event is
    with Kafka), as (key, value), in each partition's order."""

    async def drained() -> bool:
        return await stack.pool.fetchval("SELECT count(*) FROM kjs_event_outbox") == 0

    await eventually(drained, 60, interval_s=0.1, what="the event outbox to drain")
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        topic = stack.catalog.events.name
        parts = [TopicPartition(topic, p) for p in range(stack.catalog.events.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        records: list[tuple[bytes, bytes]] = []

        async def read_all() -> bool:
            batch = await consumer.getmany(*parts, timeout_ms=200)
            for recs in batch.values():
                records.extend((r.key, r.value) for r in recs)
            positions = [await consumer.position(p) for p in parts]
            return all(at >= end[p] for at, p in zip(positions, parts, strict=True))

        await eventually(read_all, 30, interval_s=0, what="the whole events topic")
        return records
    finally:
        await consumer.stop()


def distinct(records: list[tuple[bytes, bytes]]) -> list[StateEvent]:
    """The events, each once: a duplicate must be an exact redelivery (same id, same bytes),
    and its key must be its job."""
    seen: dict[uuid.UUID, bytes] = {}
    events = []
    for key, value in records:
        event = StateEvent.model_validate_json(value)
        assert key == str(event.job_id).encode()
        if event.event_id in seen:
            assert json.loads(seen[event.event_id]) == json.loads(value), "a duplicate differs"
            continue
        seen[event.event_id] = value
        events.append(event)
    return events


def recurring_job(user_id: str, job_id: str, url: str) -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(seconds=3)
    return {
        "type": "create",
        "job": {
            "job_id": job_id,
            "user_id": user_id,
            "name": "followed",
            # One occurrence in the test's time: the next is an hour later.
            "schedule": {"type": "interval", "every_seconds": 3600, "start_at": start.isoformat()},
            "target": {
                "type": "http",
                "method": "POST",
                "url": url,
                "headers": {"Authorization": "Bearer {{secrets.token}}"},
                "secrets": {"token": SECRET},
            },
            "retry": {"max_attempts": 3, "initial_delay_s": 0.2, "max_delay_s": 0.5},
        },
    }


async def test_one_jobs_life_is_exactly_its_events(
    shared_cluster: Cluster, target: RecordingTarget
) -> None:
    """Created, fails once, retried, succeeds, cancelled: the topic holds exactly that."""
    async with running_stack(
        shared_cluster, target, "events-life", schedulers=1, KJS_EVENTS="on"
    ) as stack:
        user, job_id = "events-life-u", str(uuid.uuid4())
        target.answer(user, (503, {}))  # the first call fails (retryable), the next succeeds
        await stack.command(recurring_job(user, job_id, target.url(user)))

        async def second_attempt_succeeded() -> bool:
            status = await stack.pool.fetchval(
                "SELECT status FROM kjs_executions WHERE job_id = $1 AND attempt = 2",
                uuid.UUID(job_id),
            )
            return status == "succeeded"

        await eventually(second_attempt_succeeded, 60, what="the retry to succeed")
        await stack.command({"type": "cancel", "user_id": user, "job_id": job_id})

        async def cancelled() -> bool:
            status = await stack.pool.fetchval(
                "SELECT status FROM kjs_jobs WHERE job_id = $1", uuid.UUID(job_id)
            )
            return status == "cancelled"

        await eventually(cancelled, 30, what="the job to be cancelled")
        records = await published(stack)
        runs = await stack.pool.fetch(
            "SELECT execution_id, attempt FROM kjs_executions WHERE job_id = $1 ORDER BY attempt",
            uuid.UUID(job_id),
        )

    mine = [r for r in records if r[0] == job_id.encode()]
    assert len(mine) == len({json.loads(v)["event_id"] for _, v in mine}), "a duplicate"
    events = distinct(mine)
    first, second = (r["execution_id"] for r in runs)
    assert [(e.type, e.execution.execution_id if e.execution else None) for e in events] == [
        ("job.created", None),
        ("execution.queued", first),
        ("execution.started", first),
        ("execution.failed", first),
        ("execution.retry_scheduled", second),
        ("execution.queued", second),
        ("execution.started", second),
        ("execution.succeeded", second),
        ("job.cancelled", None),
    ]
    created, failed, retry = events[0], events[3], events[4]
    assert created.job is not None and created.job.target["secrets"] == {"token": "[redacted]"}
    assert all(SECRET.encode() not in value for _, value in mine)
    assert failed.execution is not None and failed.execution.http_status == 503
    assert failed.execution.error
    assert retry.execution is not None and retry.execution.retry_at is not None
    assert events[-1].job is not None and events[-1].job.status == "cancelled"


# What each final state of a one-time job's execution and job must have published, in order.
EXECUTION_LIFE = {
    "succeeded": ["execution.queued", "execution.started", "execution.succeeded"],
}
JOB_LIFE = {"succeeded": ["job.created", "job.finished"]}


async def test_a_killed_scheduler_loses_no_committed_event_and_leaks_no_rolled_back_one(
    shared_cluster: Cluster, target: RecordingTarget
) -> None:
    async with running_stack(shared_cluster, target, "events-kill", KJS_EVENTS="on") as stack:
        owners = await stack.wait_owners({"s1", "s2"})
        jobs = await stack.submit_spread(300, start_in_s=3, every_s=0.02)
        await stack.wait_applied(jobs)

        async def bursting() -> bool:
            return len(stack.target.hits) >= 60

        await eventually(bursting, 30, interval_s=0.05, what="the burst to be under way")
        kill(stack.processes["s1"])
        await stack.wait_owners({"s2"})
        await stack.wait_all_called()
        await stack.wait_quiet(2)

        async def settled() -> bool:
            open_ = await stack.pool.fetchval(
                "SELECT count(*) FROM kjs_jobs WHERE status NOT IN ('succeeded', 'failed')"
            )
            return open_ == 0

        await eventually(settled, 60, what="every job to finish")
        records = await published(stack)
        job_rows = await stack.pool.fetch("SELECT job_id, status FROM kjs_jobs")
        execution_rows = await stack.pool.fetch(
            "SELECT execution_id, job_id, status FROM kjs_executions"
        )

    killed = sorted(s for s, o in owners.items() if o == "s1")
    events = distinct(records)
    by_job: dict[uuid.UUID, list[str]] = defaultdict(list)
    by_execution: dict[uuid.UUID, list[str]] = defaultdict(list)
    for e in events:
        if e.execution is None:
            by_job[e.job_id].append(e.type)
        else:
            by_execution[e.execution.execution_id].append(e.type)
    assert len(job_rows) == len(jobs)
    # Every committed change has its event, once; no event of a change Postgres does not hold.
    assert {r["job_id"]: by_job[r["job_id"]] for r in job_rows} == {
        r["job_id"]: JOB_LIFE[r["status"]] for r in job_rows
    }
    assert set(by_job) == {r["job_id"] for r in job_rows}
    assert {r["execution_id"]: by_execution[r["execution_id"]] for r in execution_rows} == {
        r["execution_id"]: EXECUTION_LIFE[r["status"]] for r in execution_rows
    }
    assert set(by_execution) == {r["execution_id"] for r in execution_rows}
    shards = Counter(e.shard for e in events)
    assert all(shards[s] for s in killed), f"the killed scheduler's shards {killed}: {shards}"

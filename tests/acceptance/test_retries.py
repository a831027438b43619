"""Retries decided by the owning shard, dead letters for what gives up, and replay."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from core.backoff import backoff_cap
from schemas.v1.jobs import RetryPolicy
from tests.acceptance.conftest import Stack, Target
from tests.acceptance.test_walking_skeleton import once_job
from tests.waiting import eventually
from topics.dlq import REASON

pytestmark = pytest.mark.services

FAST_RETRY = {"max_attempts": 3, "initial_delay_s": 0.2, "max_delay_s": 1.0}


def attempts(executions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(executions, key=lambda e: int(e["attempt"]))


async def dead_letters(stack: Stack, job_id: str) -> list[tuple[dict[str, bytes], Any, int]]:
    consumer = AIOKafkaConsumer(
        stack.catalog.dlq.name,
        bootstrap_servers=stack.env["KJS_KAFKA_BOOTSTRAP"],
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: list[tuple[dict[str, bytes], Any, int]] = []
    try:

        async def read() -> bool:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for rec in records:
                    headers = dict(rec.headers)
                    if headers.get("kjs-job-id") == job_id.encode():
                        found.append((headers, json.loads(rec.value), rec.offset))
            return bool(found)

        await eventually(read, what=f"a dead letter for {job_id}")
    finally:
        await consumer.stop()
    return found


async def test_two_503s_then_success_is_three_attempts_with_growing_backoff(
    stack: Stack, target: Target, user_id: str
) -> None:
    target.answer(user_id, (503, {}), (503, {}))
    body = once_job(user_id, target.url(user_id), in_s=1, retry=FAST_RETRY)
    job_id = (await stack.submit(body))["job_id"]

    await stack.wait_status(job_id, "succeeded")
    runs = attempts(await stack.executions(job_id))
    assert [e["attempt"] for e in runs] == [1, 2, 3]
    assert [e["status"] for e in runs] == ["failed", "failed", "succeeded"]
    assert [e["http_status"] for e in runs] == [503, 503, 200]
    assert len(target.calls(user_id)) == 3
    policy = RetryPolicy.model_validate(FAST_RETRY)
    for failed, retry in itertools.pairwise(runs):
        # The retry started no earlier than the failure plus zero, and no later than the
        # cap allows plus the time it takes to fire it (generous: no timing flake).
        gap = datetime.fromisoformat(retry["started_at"]) - datetime.fromisoformat(
            failed["finished_at"]
        )
        assert timedelta(0) <= gap <= timedelta(seconds=backoff_cap(policy, failed["attempt"]) + 5)
    # Each attempt has its own execution id, hence its own Idempotency-Key.
    keys = {h.headers["Idempotency-Key"] for h in target.calls(user_id)}
    assert keys == {e["execution_id"] for e in runs}


async def test_retry_after_is_honoured(stack: Stack, target: Target, user_id: str) -> None:
    target.answer(user_id, (429, {"Retry-After": "2"}))
    retry = {"max_attempts": 2, "initial_delay_s": 0.01, "max_delay_s": 30}
    job_id = (await stack.submit(once_job(user_id, target.url(user_id), 1, retry=retry)))["job_id"]

    await stack.wait_status(job_id, "succeeded")
    first, second = attempts(await stack.executions(job_id))
    gap = datetime.fromisoformat(second["started_at"]) - datetime.fromisoformat(
        first["finished_at"]
    )
    assert gap >= timedelta(seconds=2), f"retried after {gap}, before Retry-After"


async def test_a_400_is_not_retried_goes_to_the_dlq_and_can_be_replayed(
    stack: Stack, target: Target, user_id: str
) -> None:
    target.answer(user_id, (400, {}))
    body = once_job(user_id, target.url(user_id), in_s=1, retry=FAST_RETRY)
    job_id = (await stack.submit(body))["job_id"]

    await stack.wait_status(job_id, "failed")
    runs = await stack.executions(job_id)
    assert [e["attempt"] for e in runs] == [1], "a 4xx must not be retried"
    letters = await dead_letters(stack, job_id)
    headers, value, offset = letters[0]
    assert b"not retryable" in headers[REASON]
    assert value["attempts"] == 1 and value["job_id"] == job_id

    # Replay with one call: the dead letter carries the command that runs the job again.
    replay = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kjs.cli",
        "dlq",
        "replay",
        "--partition",
        "0",
        "--offset",
        str(offset),
        env=stack.env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await replay.communicate()
    assert replay.returncode == 0 and job_id in out.decode(), out.decode()
    await stack.wait_status(job_id, "succeeded")
    assert len(target.calls(user_id)) == 2


async def test_exhausted_retries_fail_the_job_with_a_dead_letter(
    stack: Stack, target: Target, user_id: str
) -> None:
    target.answer(user_id, (500, {}), (500, {}), (500, {}))
    body = once_job(user_id, target.url(user_id), in_s=1, retry=FAST_RETRY)
    job_id = (await stack.submit(body))["job_id"]

    await stack.wait_status(job_id, "failed")
    assert [e["status"] for e in attempts(await stack.executions(job_id))] == ["failed"] * 3
    headers, value, _ = (await dead_letters(stack, job_id))[0]
    assert b"after 3 attempt" in headers[REASON]
    assert value["attempts"] == 3

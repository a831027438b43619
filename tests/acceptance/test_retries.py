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

from tests.acceptance.test_walking_skeleton import once_job
from tests.support.stack import Stack
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually
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


# Slower than FAST_RETRY so that a delay stands out from the time it takes to record a result
# and fire the retry: the caps are 0.5 s after attempt 1 and 1 s after attempt 2.
GROWING_RETRY = {"max_attempts": 3, "initial_delay_s": 0.5, "max_delay_s": 2.0}
# The clocks compared are one host's (the worker's and Postgres's); this covers their
# resolution and the rounding of a delay to microseconds.
CLOCK_SLACK = timedelta(milliseconds=20)
# How long recording a failure and firing its retry may take, on top of the backoff.
FIRING_SLACK = timedelta(seconds=5)


def full_jitter_bound(policy: dict[str, float], failed_attempt: int) -> timedelta:
    """Full jitter: the delay is uniform in [0, min(max_delay, initial * 2**(attempt - 1))]."""
    seconds = min(policy["max_delay_s"], policy["initial_delay_s"] * 2 ** (failed_attempt - 1))
    return timedelta(seconds=seconds)


async def test_two_503s_then_success_is_three_attempts_with_growing_backoff(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    target.answer(user_id, (503, {}), (503, {}))
    body = once_job(user_id, target.url(user_id), in_s=1, retry=GROWING_RETRY)
    job_id = (await stack.submit(body))["job_id"]

    await stack.wait_status(job_id, "succeeded")
    runs = attempts(await stack.executions(job_id))
    assert [e["attempt"] for e in runs] == [1, 2, 3]
    assert [e["status"] for e in runs] == ["failed", "failed", "succeeded"]
    assert [e["http_status"] for e in runs] == [503, 503, 200]
    assert len(target.calls(user_id)) == 3
    # The delay the shard chose for each retry: it inserted the row 'pending' with
    # due_at = now() + delay, and created_at = now() (one transaction, one now()).
    rows = {
        str(r["execution_id"]): r
        for r in await stack.pool.fetch(
            "SELECT execution_id, created_at, due_at FROM kjs_executions WHERE job_id = $1::uuid",
            job_id,
        )
    }
    delays = []
    for failed, retry in itertools.pairwise(runs):
        bound = full_jitter_bound(GROWING_RETRY, failed["attempt"])
        row = rows[retry["execution_id"]]
        delay = row["due_at"] - row["created_at"]
        assert timedelta(0) < delay <= bound, (failed["attempt"], delay, bound)
        # Measured: the retry started no earlier than its delay after the failure, and no
        # later than the bound allows plus the time it takes to record and fire it.
        finished = datetime.fromisoformat(failed["finished_at"])
        started = datetime.fromisoformat(retry["started_at"])
        assert started >= row["due_at"] - CLOCK_SLACK, "the retry started before its backoff"
        gap = started - finished
        assert delay - CLOCK_SLACK <= gap <= bound + FIRING_SLACK, (failed["attempt"], gap)
        delays.append(delay)
    # Jittered, not a constant: two draws of a full jitter are never the same.
    assert delays[0] != delays[1], delays
    # The bound doubles from one attempt to the next (until max_delay_s).
    assert full_jitter_bound(GROWING_RETRY, 2) == 2 * full_jitter_bound(GROWING_RETRY, 1)
    # Each attempt has its own execution id, hence its own Idempotency-Key.
    keys = {h.headers["Idempotency-Key"] for h in target.calls(user_id)}
    assert keys == {e["execution_id"] for e in runs}


async def test_retry_after_is_honoured(stack: Stack, target: RecordingTarget, user_id: str) -> None:
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
    stack: Stack, target: RecordingTarget, user_id: str
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
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    target.answer(user_id, (500, {}), (500, {}), (500, {}))
    body = once_job(user_id, target.url(user_id), in_s=1, retry=FAST_RETRY)
    job_id = (await stack.submit(body))["job_id"]

    await stack.wait_status(job_id, "failed")
    assert [e["status"] for e in attempts(await stack.executions(job_id))] == ["failed"] * 3
    headers, value, _ = (await dead_letters(stack, job_id))[0]
    assert b"after 3 attempt" in headers[REASON]
    assert value["attempts"] == 3

"""A worker driven past its capacity runs each execution once: overload becomes lateness,
never a lapsed lease that the shard's reaper would re-dispatch as a second run."""

# The harness's fixtures are imported by name, which pyflakes reads as unused imports and
# their parameters as redefinitions.
# ruff: noqa: F401, F811

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from core.clock import utcnow
from scheduler.store.leases import requeue_expired
from tests.integration.worker_harness import (
    StartWorker,
    TopicReader,
    cat,
    due_event,
    http_target,
    insert_execution,
    insert_job,
    lane_kafka,
    producer,
    result_for,
    results,
    send_due,
    start_worker,
)
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually
from topics.catalog import Catalog
from workers.leases import REPORTED_TTL_S, LeaseKeeper
from workers.main import WorkerTuning

pytestmark = pytest.mark.services

JOBS = 24
# Leases ten times shorter than the defaults, so the test sees many lapse if any can.
TUNING = WorkerTuning(heartbeat_interval_s=0.1, lease_ttl_s=0.8)


async def test_an_overloaded_worker_keeps_every_lease_until_the_shard_has_the_result(
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    results: TopicReader,
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    """Two slots, 24 executions due at once, the target holding every request for several
    lease lengths, and no shard recording results (as when the scheduler lags behind
    jobs.results). A reaper doing what the shard's does every 0.1 s must find nothing to
    re-run: neither the claimed executions waiting for a slot, nor the reported ones."""
    running = await start_worker(concurrency=2, max_held=JOBS, tuning=TUNING)
    leases = running.worker.leases
    assert leases is not None
    # A shard of its own, so no other test's executions or owner meet this reaper.
    shard = random.randint(10_000, 1_000_000)
    await pool.execute(
        "INSERT INTO kjs_shards (shard, epoch, owner) VALUES ($1, 1, 'overload-test')", shard
    )
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    now = datetime.now(UTC)
    executions = [
        await insert_execution(pool, job_id, user_id, shard, now - timedelta(milliseconds=i))
        for i in range(JOBS)
    ]
    reaped: list[UUID] = []

    async def reap() -> None:
        while True:
            reaped.extend(o.execution_id for o in await requeue_expired(pool, shard, 1))
            await asyncio.sleep(0.1)

    reaper = asyncio.create_task(reap())
    try:
        http_target.gate.clear()
        for execution in executions:
            await send_due(producer, cat, due_event(execution, http_target.url()))

        async def slots_full() -> bool | None:
            return True if http_target.open_requests == 2 else None

        await eventually(slots_full, what="two executions running, the rest waiting")
        beats = leases.beats

        async def held_past_their_lease() -> bool | None:
            # 30 heartbeats of 0.1 s: the waiting claims outlive their 0.8 s lease 3 times.
            return True if leases.beats >= beats + 30 else None

        await eventually(held_past_their_lease, what="the slots to stay full for 3 s")
        http_target.gate.set()
        for execution in executions:
            _, result = await result_for(results, execution.execution_id)
            assert result.status == "succeeded"
        reported_at = time.monotonic()

        async def reported_leases_outlived() -> bool | None:
            # Handed over, and more than twice the lease since: a dropped one would have lapsed.
            return True if leases.idle and time.monotonic() > reported_at + 2.0 else None

        await eventually(reported_leases_outlived, what="2 s after the last report")
    finally:
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper

    assert reaped == []
    for execution in executions:
        assert len(http_target.hits_for(execution.execution_id)) == 1
    leased = await pool.fetch(
        "SELECT lease_until FROM kjs_executions WHERE job_id = $1 AND status = 'running'", job_id
    )
    assert len(leased) == JOBS
    assert all(
        (r["lease_until"] - datetime.now(UTC)).total_seconds() > REPORTED_TTL_S - 60 for r in leased
    )


async def test_a_released_lease_is_only_handed_over_once_its_result_is_reported(
    pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await insert_job(pool, user_id, 0, "http://127.0.0.1:9/unused")
    now = datetime.now(UTC)
    reported, abandoned = [
        (await insert_execution(pool, job_id, user_id, 0, now - timedelta(seconds=i))).execution_id
        for i in range(2)
    ]
    keeper = LeaseKeeper(pool, "w-handover", interval_s=1, ttl_s=5)
    for execution_id in (reported, abandoned):
        row = await pool.fetchrow(
            "UPDATE kjs_executions SET status = 'running', started_at = now(), worker = $2,"
            " lease_until = now() + interval '5 seconds' WHERE execution_id = $1"
            " RETURNING lease_until",
            execution_id,
            "w-handover",
        )
        assert row is not None
        keeper.hold(execution_id)
    before = dict(
        await pool.fetch(
            "SELECT execution_id, lease_until FROM kjs_executions WHERE job_id = $1", job_id
        )
    )
    keeper.release(reported, reported=True)
    keeper.release(abandoned)

    assert await keeper.extend() == {reported}
    after = dict(
        await pool.fetch(
            "SELECT execution_id, lease_until FROM kjs_executions WHERE job_id = $1", job_id
        )
    )
    assert (after[reported] - before[reported]).total_seconds() > REPORTED_TTL_S - 60
    assert after[abandoned] == before[abandoned]
    assert keeper.idle

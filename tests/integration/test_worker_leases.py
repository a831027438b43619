"""Leases while jobs run, and long jobs that cost the consumer group nothing."""

# The harness's fixtures are imported by name, which pyflakes reads as unused imports and
# their parameters as redefinitions.
# ruff: noqa: F401, F811

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from core.settings import KafkaSettings
from tests.integration.worker_harness import (
    StartWorker,
    TopicReader,
    cat,
    committed,
    due_event,
    execution_row,
    http_target,
    insert_execution,
    insert_job,
    lane_kafka,
    producer,
    result_for,
    results,
    send_due,
    shard_of,
    start_worker,
)
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually
from topics.catalog import Catalog
from workers.claims import Claimer
from workers.leases import LeaseKeeper
from workers.main import WorkerTuning

pytestmark = pytest.mark.services


async def test_a_job_longer_than_max_poll_interval_keeps_its_lease_and_the_group_stable(
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    committed: Callable[[int, int], Awaitable[None]],
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    """The job outlasts max.poll.interval.ms several times over. A worker that stopped
    polling while it runs would be evicted and rejoin (a revocation and a second assignment);
    this one keeps polling with its partitions paused, and keeps the lease alive."""
    tuning = WorkerTuning(max_poll_interval_ms=1000, heartbeat_interval_s=0.2, lease_ttl_s=1.0)
    running = await start_worker(concurrency=1, max_held=1, tuning=tuning)
    leases = running.worker.leases
    lane = running.worker.lane_loop
    assert leases is not None and lane is not None
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    execution = await insert_execution(pool, job_id, user_id, shard, datetime.now(UTC))
    http_target.gate.clear()

    sent = await send_due(producer, cat, due_event(execution, http_target.url()))

    async def running_with_lease() -> asyncpg.Record | None:
        row = await execution_row(pool, execution.execution_id)
        return row if row["status"] == "running" and http_target.open_requests == 1 else None

    first = await eventually(running_with_lease, what="the job to start")
    beats_at_start = leases.beats

    # 20 heartbeats at 0.2 s: about 4 s, four times max.poll.interval.ms.
    async def held_long() -> bool | None:
        return True if leases.beats >= beats_at_start + 20 else None

    await eventually(held_long, what="the job to run through twenty heartbeats")
    extended = await execution_row(pool, execution.execution_id)
    assert extended["lease_until"] > first["lease_until"]
    assert extended["lease_until"] > datetime.now(UTC)  # a live worker's lease never lapses
    assert leases.held() == {execution.execution_id}

    http_target.gate.set()
    _, result = await result_for(results, execution.execution_id)
    await committed(sent.partition, sent.offset)

    assert result.status == "succeeded"
    assert len(http_target.hits_for(execution.execution_id)) == 1
    assert (lane.assignments, lane.revocations) == (1, 0)
    assert leases.held() == frozenset()


async def queued_ids(pool: asyncpg.Pool, user_id: str, count: int) -> list[UUID]:
    job_id = await insert_job(pool, user_id, 0, "http://127.0.0.1:9/unused")
    return [
        (await insert_execution(pool, job_id, user_id, 0, datetime.now(UTC))).execution_id
        for _ in range(count)
    ]


async def test_a_heartbeat_extends_only_this_workers_running_executions(
    pool: asyncpg.Pool, user_id: str
) -> None:
    ours, theirs, finished = await queued_ids(pool, user_id, 3)
    claims = {
        ours: await Claimer(pool, "w-ours", lease_s=5).claim(ours),
        theirs: await Claimer(pool, "w-theirs", lease_s=5).claim(theirs),
        finished: await Claimer(pool, "w-ours", lease_s=5).claim(finished),
    }
    await pool.execute(
        "UPDATE kjs_executions SET status = 'succeeded', finished_at = now()"
        " WHERE execution_id = $1",
        finished,
    )
    keeper = LeaseKeeper(pool, "w-ours", interval_s=1, ttl_s=600)
    for execution_id in (ours, theirs, finished):
        keeper.hold(execution_id)

    assert await keeper.extend() == {ours}
    leases = dict(
        await pool.fetch(
            "SELECT execution_id, lease_until FROM kjs_executions WHERE execution_id = ANY($1)",
            [ours, theirs, finished],
        )
    )
    for execution_id, claim in claims.items():
        assert claim is not None
        if execution_id == ours:
            assert leases[ours] > claim.lease_until
        else:
            assert leases[execution_id] == claim.lease_until


async def test_a_lease_held_twice_is_kept_until_both_release_it(pool: asyncpg.Pool) -> None:
    keeper = LeaseKeeper(pool, f"w-{uuid.uuid4().hex[:6]}", interval_s=1, ttl_s=2)
    execution_id = uuid.uuid4()
    keeper.hold(execution_id)
    keeper.hold(execution_id)
    keeper.release(execution_id)
    assert keeper.held() == {execution_id}
    keeper.release(execution_id)
    assert keeper.held() == frozenset()


async def test_a_heartbeat_renews_only_the_leases_about_to_run_out(
    pool: asyncpg.Pool, user_id: str
) -> None:
    """A lease with more than ``renew_within`` left costs no write: short attempts (most of
    them) finish on the lease their claim took."""
    (fresh,) = await queued_ids(pool, user_id, 1)
    keeper = LeaseKeeper(pool, "w-renew", interval_s=1, ttl_s=600)
    claim = await Claimer(pool, "w-renew", lease_s=600).claim(fresh)
    assert claim is not None
    keeper.hold(fresh)

    assert await keeper.extend(due_only=True) == set()
    row = await pool.fetchrow(
        "SELECT lease_until FROM kjs_executions WHERE execution_id = $1", fresh
    )
    assert row["lease_until"] == claim.lease_until

    short = LeaseKeeper(pool, "w-renew", interval_s=1, ttl_s=2)  # 2 s left < renew_within (3 s)
    short.hold(fresh)
    assert await short.extend(due_only=True) == {fresh}


async def test_a_lease_counts_from_when_its_claim_was_sent_not_when_it_was_read(
    pool: asyncpg.Pool, user_id: str
) -> None:
    """A saturated worker may read a claim's answer seconds after Postgres started the lease;
    the renewal must come by the lease's own clock, or it comes after the lease lapsed and
    the shard re-runs a job that is running."""
    (slow,) = await queued_ids(pool, user_id, 1)
    keeper = LeaseKeeper(pool, "w-slow", interval_s=1, ttl_s=7)  # renews with < 3.5 s left
    claim = await Claimer(pool, "w-slow", lease_s=7).claim(slow)
    assert claim is not None and claim.asked_at <= time.monotonic()
    # Its answer read 5 s after the statement was sent: 2 s of the lease are left.
    keeper.hold(slow, since=time.monotonic() - 5)
    assert await keeper.extend(due_only=True) == {slow}

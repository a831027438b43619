"""Pruning execution logs against the real Postgres, in a database of its own.

The session's database holds other tests' rows, some of them finished long ago; a pruner let
loose there would delete them and count them. Each test here gets a fresh, migrated database.
"""

# The harness's fixtures are imported by name, which pyflakes reads as unused imports and
# their parameters as redefinitions.
# ruff: noqa: F401, F811

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import pytest

from core.db import create_pool, migrate_url
from core.settings import DatabaseSettings
from tests.integration.worker_harness import StartWorker, lane_kafka, start_worker
from tests.support.waiting import eventually
from workers.main import WorkerTuning
from workers.retention import prune_batches, prune_executions

pytestmark = pytest.mark.services

NOW = datetime.now(UTC)
RETENTION = timedelta(days=30)
OLD = NOW - timedelta(days=40)


@dataclass(frozen=True)
class Store:
    url: str
    pool: asyncpg.Pool


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    base, name = database_url.rsplit("/", 1)[0], f"kjs_ret_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{base}/{name}"
        await migrate_url(url)
        pool = await create_pool(DatabaseSettings(), dsn=url)
        try:
            yield Store(url, pool)
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def job(pool: asyncpg.Pool) -> UUID:
    job_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO kjs_jobs (job_id, user_id, shard, name, schedule, target, priority, retry,"
        " status, next_run_at, source) VALUES ($1, 'u-ret', 0, 'ret', $2, $3, 'low', $4,"
        " 'scheduled', now(), 'test')",
        job_id,
        {"type": "interval", "every_seconds": 60},
        {"type": "kafka", "topic": "out"},
        {"max_attempts": 1},
    )
    return job_id


async def execution(pool: asyncpg.Pool, job_id: UUID, status: str, at: datetime) -> UUID:
    """An execution in ``status`` whose every time is ``at`` (finished then, if finished)."""
    execution_id = uuid.uuid4()
    started = status in ("running", "succeeded", "failed")
    await pool.execute(
        "INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,"
        " attempt, lane, status, started_at, finished_at, worker, due_at, created_at)"
        " VALUES ($1, $2, 'u-ret', 0, $3::timestamptz, 1, 'low', $4::text,"
        " CASE WHEN $5::bool THEN $3 END,"
        " CASE WHEN $4 IN ('succeeded', 'failed', 'cancelled') THEN $3 END,"
        " CASE WHEN $5 THEN 'w' END, CASE WHEN $4 = 'pending' THEN $3 END, $3)",
        execution_id,
        job_id,
        at,
        status,
        started,
    )
    return execution_id


async def remaining(pool: asyncpg.Pool) -> set[UUID]:
    return {r["execution_id"] for r in await pool.fetch("SELECT execution_id FROM kjs_executions")}


async def test_only_finished_executions_older_than_the_retention_are_pruned(store: Store) -> None:
    job_id = await job(store.pool)
    old_finished = {
        await execution(store.pool, job_id, status, OLD + timedelta(seconds=n))
        for n, status in enumerate(["succeeded", "failed", "cancelled", "succeeded", "failed"])
    }
    kept = {
        await execution(store.pool, job_id, "succeeded", NOW - timedelta(days=1)),
        # Old but unfinished: a run (or a retry) still in progress is never pruned.
        await execution(store.pool, job_id, "running", OLD - timedelta(seconds=1)),
        await execution(store.pool, job_id, "queued", OLD - timedelta(seconds=2)),
        await execution(store.pool, job_id, "pending", OLD - timedelta(seconds=3)),
    }

    assert await remaining(store.pool) == old_finished | kept
    assert await prune_executions(store.pool, RETENTION, batch=2, now=NOW) == 5
    assert await remaining(store.pool) == kept
    assert await prune_executions(store.pool, RETENTION, batch=2, now=NOW) == 0


async def test_pruning_goes_in_bounded_batches_oldest_first(store: Store) -> None:
    job_id = await job(store.pool)
    ids = [
        await execution(store.pool, job_id, "succeeded", OLD + timedelta(minutes=n))
        for n in range(5)
    ]
    seen: list[tuple[int, set[UUID]]] = []
    async for deleted in prune_batches(store.pool, NOW - RETENTION, batch=2):
        seen.append((deleted, await remaining(store.pool)))

    assert seen == [(2, set(ids[2:])), (2, {ids[4]}), (1, set())]


async def test_a_row_someone_holds_is_passed_over_not_waited_for(store: Store) -> None:
    job_id = await job(store.pool)
    held = await execution(store.pool, job_id, "failed", OLD)
    await execution(store.pool, job_id, "failed", OLD + timedelta(seconds=1))
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM kjs_executions WHERE execution_id = $1 FOR UPDATE", held)
        # Were the pruner to wait for the lock, this would block until the timeout.
        async with asyncio.timeout(10):
            assert await prune_executions(store.pool, RETENTION, now=NOW) == 1
        assert await remaining(store.pool) == {held}
    assert await prune_executions(store.pool, RETENTION, now=NOW) == 1


async def test_concurrent_pruners_share_the_work_without_errors(store: Store) -> None:
    job_id = await job(store.pool)
    await store.pool.executemany(
        "INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,"
        " attempt, lane, status, started_at, finished_at, worker)"
        " VALUES ($1, $2, 'u-ret', 0, $3, 1, 'low', 'succeeded', $3, $3, 'w')",
        [(uuid.uuid4(), job_id, OLD + timedelta(seconds=n)) for n in range(300)],
    )
    counts = await asyncio.gather(
        *(prune_executions(store.pool, RETENTION, batch=7, now=NOW) for _ in range(4))
    )
    assert sum(counts) == 300
    assert await remaining(store.pool) == set()


async def test_a_worker_prunes_periodically_with_its_retention_setting(
    start_worker: StartWorker, store: Store
) -> None:
    job_id = await job(store.pool)
    recent = await execution(store.pool, job_id, "succeeded", NOW - timedelta(hours=1))
    await start_worker(
        database_url=store.url, retention_days=1, tuning=WorkerTuning(retention_interval_s=0.2)
    )
    # Finished after the worker started: only a later pass of the pruner can take it.
    old = await execution(store.pool, job_id, "succeeded", NOW - timedelta(days=2))

    async def pruned() -> bool | None:
        return True if old not in await remaining(store.pool) else None

    await eventually(pruned, what="the worker to prune the old execution")
    assert await remaining(store.pool) == {recent}

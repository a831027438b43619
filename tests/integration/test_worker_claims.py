"""Claims against the real Postgres: one start per execution, however deliveries race."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import pytest

from workers.claims import Claimer

pytestmark = pytest.mark.services


async def queued_executions(pool: asyncpg.Pool, user_id: str, count: int) -> list[UUID]:
    """A job with ``count`` queued executions, as the scheduler leaves them."""
    job_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO kjs_jobs (job_id, user_id, shard, name, schedule, target, priority, retry,"
        " status, source) VALUES ($1, $2, 0, 'claims', $3, $4, 'normal', $5, 'queued', 'test')",
        job_id,
        user_id,
        {"type": "once", "at": "2030-01-01T00:00:00Z"},
        {"type": "kafka", "topic": "out"},
        {"max_attempts": 1},
    )
    ids = [uuid.uuid4() for _ in range(count)]
    base = datetime.now(UTC)
    await pool.executemany(
        "INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,"
        " attempt, lane, status) VALUES ($1, $2, $3, 0, $4, 1, 'normal', 'queued')",
        [(i, job_id, user_id, base + timedelta(microseconds=n)) for n, i in enumerate(ids)],
    )
    return ids


async def test_a_claim_starts_a_queued_execution_with_a_lease(
    pool: asyncpg.Pool, user_id: str
) -> None:
    (execution_id,) = await queued_executions(pool, user_id, 1)
    claim = await Claimer(pool, "w-1", lease_s=12.5).claim(execution_id)
    assert claim is not None
    row = await pool.fetchrow(
        "SELECT status, worker, started_at, lease_until FROM kjs_executions"
        " WHERE execution_id = $1",
        execution_id,
    )
    assert row is not None
    assert (row["status"], row["worker"]) == ("running", "w-1")
    assert (row["started_at"], row["lease_until"]) == (claim.started_at, claim.lease_until)
    assert claim.lease_until - claim.started_at == timedelta(seconds=12.5)


@pytest.mark.parametrize("status", ["running", "cancelled"])
async def test_an_execution_that_is_not_queued_is_not_claimed(
    pool: asyncpg.Pool, user_id: str, status: str
) -> None:
    (execution_id,) = await queued_executions(pool, user_id, 1)
    await pool.execute(
        "UPDATE kjs_executions SET status = $2, worker = 'w-0', started_at = now(),"
        " finished_at = CASE WHEN $2 = 'cancelled' THEN now() END WHERE execution_id = $1",
        execution_id,
        status,
    )
    assert await Claimer(pool, "w-1").claim(execution_id) is None


async def test_racing_deliveries_and_workers_start_each_execution_once(
    pool: asyncpg.Pool, user_id: str
) -> None:
    ids = await queued_executions(pool, user_id, 300)
    first, second = Claimer(pool, "w-1"), Claimer(pool, "w-2")
    # Every execution delivered twice to each of two workers, all at once: the batches
    # hold duplicates, and the two workers' statements race on the same rows.
    attempts = [(c, i) for i in ids for c in (first, second, first, second)]
    claims = await asyncio.gather(*(c.claim(i) for c, i in attempts))
    won = [(c, i) for (c, i), claim in zip(attempts, claims, strict=True) if claim is not None]
    assert sorted(i for _, i in won) == sorted(ids)
    workers = dict(
        await pool.fetch(
            "SELECT execution_id, worker FROM kjs_executions WHERE execution_id = ANY($1)", ids
        )
    )
    assert {i: ("w-1" if c is first else "w-2") for c, i in won} == workers

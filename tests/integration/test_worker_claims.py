"""Claims against the real Postgres: one start per execution, however deliveries race, in
few statements, each finding its executions by primary key."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from core.queries import QUERIES
from tests.support.waiting import eventually
from workers.claims import Claimer

pytestmark = pytest.mark.services


async def queued_job(pool: asyncpg.Pool, user_id: str) -> UUID:
    """A one-time job whose occurrence is out, as the scheduler leaves it."""
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
    return job_id


async def queued_executions(pool: asyncpg.Pool, user_id: str, count: int) -> list[UUID]:
    """A job with ``count`` queued executions, as the scheduler leaves them."""
    job_id = await queued_job(pool, user_id)
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


class HeldPool:
    """The real pool, whose first statement waits for ``release``; records each statement's
    ids, at the moment it is sent."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.statements: list[list[UUID]] = []
        self.release = asyncio.Event()

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        self.statements.append(list(args[0]))  # type: ignore[call-overload]
        if len(self.statements) == 1:
            await self.release.wait()
        return await self._pool.fetch(query, *args)


async def test_claims_asked_for_during_a_statement_share_the_next_one(
    pool: asyncpg.Pool, user_id: str
) -> None:
    first, *later, last = await queued_executions(pool, user_id, 5)
    held = HeldPool(pool)
    # A coalescing window no test waits for: only an urgent claim sends the gathered ones.
    claimer = Claimer(held, "w-1", coalesce_s=3600)  # type: ignore[arg-type]
    in_flight = asyncio.create_task(claimer.claim(first))
    await eventually(_returns(lambda: len(held.statements) == 1), what="the first statement")
    waiting = [asyncio.create_task(claimer.claim(i, urgent=False)) for i in later]
    await asyncio.sleep(0)  # one turn of the loop: the tasks ask for their claims
    held.release.set()
    assert await in_flight is not None
    # Sent as soon as the first statement returned, they would be a statement of their own.
    assert held.statements == [[first]]
    assert await claimer.claim(last) is not None
    assert all(await asyncio.gather(*waiting))
    assert held.statements == [[first], [*later, last]]


def _returns(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return check()

    return probe


async def executions_with_stale_statistics(pool: asyncpg.Pool, user_id: str) -> list[UUID]:
    """20,000 finished executions, analyzed, then 500 queued and 500 running ones that the
    statistics do not know of; returns some of the queued ones' ids."""
    job_id = await queued_job(pool, user_id)
    insert = (
        "INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,"
        " attempt, lane, status, started_at, finished_at, worker)"
        " SELECT gen_random_uuid(), $1, $2, 0,"
        " $3::timestamptz + make_interval(secs => n + $4::int),"
        " 1, 'normal', $5, CASE WHEN $5 <> 'queued' THEN now() END,"
        " CASE WHEN $5 = 'succeeded' THEN now() END, CASE WHEN $5 <> 'queued' THEN 'w-0' END"
        " FROM generate_series(1, $6) AS n"
    )
    base = datetime(2030, 1, 1, tzinfo=UTC)
    await pool.execute(insert, job_id, user_id, base, 0, "succeeded", 20_000)
    await pool.execute("ANALYZE kjs_executions")
    await pool.execute(insert, job_id, user_id, base, 100_000, "queued", 500)
    await pool.execute(insert, job_id, user_id, base, 200_000, "running", 500)
    rows = await pool.fetch(
        "SELECT execution_id FROM kjs_executions WHERE status = 'queued' LIMIT 5"
    )
    return [r["execution_id"] for r in rows]


def indexes_in(plan: Any) -> set[str]:
    found = set()
    if isinstance(plan, dict):
        if "Index Name" in plan:
            found.add(plan["Index Name"])
        for value in plan.values():
            found |= indexes_in(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= indexes_in(value)
    return found


async def plan_of(pool: asyncpg.Pool, name: str, *args: object) -> set[str]:
    async with pool.acquire() as conn, conn.transaction():
        text = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {QUERIES[name]}", *args)
    return indexes_in(json.loads(text))


# The statistics of kjs_executions are always behind (its rows change status several times a
# second each): with the unfinished rows put at a handful, a plain ``status = 'queued'`` made
# the planner read every unfinished row through the partial index kjs_executions_slots and
# hash them against the ids, 240 blocks per claim of a few ids at 500 jobs/s.
@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("claim_executions", lambda ids: (ids, [7.0] * len(ids), "w-1")),
        ("claim_executions_with_events", lambda ids: (ids, [7.0] * len(ids), "w-1")),
    ],
)
async def test_a_claim_finds_its_executions_by_primary_key(
    pool: asyncpg.Pool, user_id: str, name: str, args: Any
) -> None:
    ids = await executions_with_stale_statistics(pool, user_id)
    used = await plan_of(pool, name, *args(ids))
    assert "kjs_executions_pkey" in used
    assert "kjs_executions_slots" not in used

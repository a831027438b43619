"""The claim statements find their executions by primary key, whatever the planner's
statistics say about how many executions are unfinished.

The statistics of kjs_executions are always behind (its rows change status several times a
second each): with the unfinished rows put at a handful, a plain ``status = 'queued'`` made
the planner read every unfinished row through the partial index kjs_executions_slots and
hash them against the ids, 240 blocks per claim of a few ids at 500 jobs/s.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from core.queries import QUERIES

pytestmark = pytest.mark.services


async def executions_with_stale_statistics(pool: asyncpg.Pool, user_id: str) -> list[UUID]:
    """20,000 finished executions, analyzed, then 500 queued and 500 running ones that the
    statistics do not know of; returns some of the queued ones' ids."""
    job_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO kjs_jobs (job_id, user_id, shard, name, schedule, target, priority, retry,"
        " status, source) VALUES ($1, $2, 0, 'plans', $3, $4, 'normal', $5, 'queued', 'test')",
        job_id,
        user_id,
        {"type": "once", "at": "2030-01-01T00:00:00Z"},
        {"type": "kafka", "topic": "out"},
        {"max_attempts": 1},
    )
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

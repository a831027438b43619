"""Every Postgres write a scheduler shard makes, each one fenced by the shard's epoch.

The fence is a ``SELECT ... FOR SHARE`` of the shard's row at the start of each write
transaction. A new owner's epoch bump is an ``UPDATE`` of that row, so it waits for the old
owner's in-flight transactions, and every later transaction of the old owner finds the new
epoch and raises :class:`Fenced` before it writes anything (invariant 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from schemas.v1.events import ResultEvent


class Fenced(RuntimeError):
    """This process no longer owns the shard; another instance bumped its epoch."""


@dataclass(frozen=True)
class NewJob:
    job_id: UUID
    user_id: str
    shard: int
    name: str
    idempotency_key: str | None
    schedule: dict[str, Any]
    target: dict[str, Any]
    priority: str
    retry: dict[str, Any]
    next_run_at: datetime
    created_at: datetime
    source: str


@dataclass(frozen=True)
class DueJob:
    job_id: UUID
    next_run_at: datetime


@dataclass(frozen=True)
class Occurrence:
    """One execution row as the dispatcher needs it for the due event."""

    execution_id: UUID
    job_id: UUID
    user_id: str
    attempt: int
    scheduled_for: datetime
    lane: str
    target: dict[str, Any]


@dataclass(frozen=True)
class FiringJob:
    """A locked job row, input to the occurrence arithmetic done in Python."""

    job_id: UUID
    user_id: str
    schedule: dict[str, Any]
    target: dict[str, Any]
    priority: str
    next_run_at: datetime
    created_at: datetime


@dataclass(frozen=True)
class Fired:
    """What to write for one fired job: its occurrence, and the run after it (or none)."""

    occurrence: Occurrence
    next_run_at: datetime | None


async def claim_shard(pool: asyncpg.Pool, shard: int, owner: str) -> int:
    """Take ownership of a shard; returns the new epoch that fences the previous owner."""
    epoch: int = await pool.fetchval(
        """
        INSERT INTO kjs_shards (shard, epoch, owner) VALUES ($1, 1, $2)
        ON CONFLICT (shard) DO UPDATE
            SET epoch = kjs_shards.epoch + 1, owner = EXCLUDED.owner, assigned_at = now()
        RETURNING epoch
        """,
        shard,
        owner,
    )
    return epoch


async def _fence(conn: asyncpg.Connection, shard: int, epoch: int) -> None:
    current = await conn.fetchval("SELECT epoch FROM kjs_shards WHERE shard = $1 FOR SHARE", shard)
    if current != epoch:
        raise Fenced(f"shard {shard}: holding epoch {epoch}, current is {current}")


async def insert_job(pool: asyncpg.Pool, epoch: int, job: NewJob) -> bool:
    """Insert a job once; a repeat (same job_id, or same user and idempotency key) is a no-op."""
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, job.shard, epoch)
        status = await conn.execute(
            """
            INSERT INTO kjs_jobs (job_id, user_id, shard, name, idempotency_key, schedule,
                                  target, priority, retry, status, next_run_at, created_at,
                                  updated_at, source)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'scheduled', $10, $11, $11, $12)
            ON CONFLICT DO NOTHING
            """,
            job.job_id,
            job.user_id,
            job.shard,
            job.name,
            job.idempotency_key,
            job.schedule,
            job.target,
            job.priority,
            job.retry,
            job.next_run_at,
            job.created_at,
            job.source,
        )
    return bool(status == "INSERT 0 1")


async def cancel_job(pool: asyncpg.Pool, shard: int, epoch: int, user_id: str, job_id: UUID) -> str:
    """Cancel a job and its not-yet-started executions.

    Returns ``cancelled``, ``unknown`` (no such job for this tenant) or ``finished``.
    """
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, shard, epoch)
        row = await conn.fetchrow(
            "SELECT status FROM kjs_jobs WHERE job_id = $1 AND user_id = $2 FOR UPDATE",
            job_id,
            user_id,
        )
        if row is None:
            return "unknown"
        if row["status"] in ("succeeded", "failed", "cancelled"):
            return "finished"
        await conn.execute(
            "UPDATE kjs_jobs SET status = 'cancelled', next_run_at = NULL, updated_at = now()"
            " WHERE job_id = $1",
            job_id,
        )
        # A worker's claim only takes 'queued' rows, so this also wins inside the lead time.
        await conn.execute(
            "UPDATE kjs_executions SET status = 'cancelled', finished_at = now()"
            " WHERE job_id = $1 AND status = 'queued'",
            job_id,
        )
    return "cancelled"


async def due_jobs(pool: asyncpg.Pool, shard: int, until: datetime) -> list[DueJob]:
    rows = await pool.fetch(
        "SELECT job_id, next_run_at FROM kjs_jobs"
        " WHERE shard = $1 AND status = 'scheduled' AND next_run_at <= $2",
        shard,
        until,
    )
    return [DueJob(r["job_id"], r["next_run_at"]) for r in rows]


async def lock_firing(
    conn: asyncpg.Connection, shard: int, job_ids: list[UUID], until: datetime
) -> list[FiringJob]:
    rows = await conn.fetch(
        """
        SELECT job_id, user_id, schedule, target, priority, next_run_at, created_at
        FROM kjs_jobs
        WHERE job_id = ANY($1::uuid[]) AND shard = $2 AND status = 'scheduled'
          AND next_run_at <= $3
        FOR UPDATE
        """,
        job_ids,
        shard,
        until,
    )
    return [FiringJob(**dict(r)) for r in rows]


async def write_fired(conn: asyncpg.Connection, shard: int, fired: list[Fired]) -> None:
    """Write the execution rows and move each job on, in two batched statements."""
    occ = [f.occurrence for f in fired]
    await conn.execute(
        """
        INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                                    attempt, lane, status)
        SELECT e, j, u, $4, s, a, l, 'queued'
        FROM unnest($1::uuid[], $2::uuid[], $3::text[], $5::timestamptz[], $6::int[],
                    $7::text[]) AS t(e, j, u, s, a, l)
        ON CONFLICT DO NOTHING
        """,
        [o.execution_id for o in occ],
        [o.job_id for o in occ],
        [o.user_id for o in occ],
        shard,
        [o.scheduled_for for o in occ],
        [o.attempt for o in occ],
        [o.lane for o in occ],
    )
    await conn.execute(
        """
        UPDATE kjs_jobs AS j
        SET next_run_at = t.n,
            status = CASE WHEN t.n IS NULL THEN 'queued' ELSE 'scheduled' END,
            run_count = j.run_count + 1,
            updated_at = now()
        FROM unnest($1::uuid[], $2::timestamptz[]) AS t(id, n)
        WHERE j.job_id = t.id
        """,
        [f.occurrence.job_id for f in fired],
        [f.next_run_at for f in fired],
    )


async def undispatched(
    pool: asyncpg.Pool, shard: int, created_before: datetime
) -> list[Occurrence]:
    """Executions written but never acknowledged by Kafka: the outbox to re-send."""
    rows = await pool.fetch(
        """
        SELECT e.execution_id, e.job_id, e.user_id, e.attempt, e.scheduled_for, e.lane, j.target
        FROM kjs_executions e JOIN kjs_jobs j USING (job_id)
        WHERE e.shard = $1 AND e.status = 'queued' AND e.dispatched_at IS NULL
          AND e.created_at < $2
        ORDER BY e.scheduled_for
        """,
        shard,
        created_before,
    )
    return [Occurrence(**dict(r)) for r in rows]


async def mark_dispatched(pool: asyncpg.Pool, execution_ids: list[UUID]) -> None:
    await pool.execute(
        "UPDATE kjs_executions SET dispatched_at = now()"
        " WHERE execution_id = ANY($1::uuid[]) AND dispatched_at IS NULL",
        execution_ids,
    )


async def record_result(pool: asyncpg.Pool, shard: int, epoch: int, result: ResultEvent) -> bool:
    """Record a worker's outcome once; a redelivered result changes nothing.

    A one-time job takes the outcome as its own status. A recurring job stays scheduled:
    its next occurrence was planned when this one fired.
    """
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, shard, epoch)
        job_id = await conn.fetchval(
            """
            UPDATE kjs_executions
            SET status = $2, started_at = COALESCE(started_at, $3), finished_at = $4,
                worker = COALESCE(worker, $5), http_status = $6, output_excerpt = $7,
                error = $8, lease_until = NULL
            WHERE execution_id = $1 AND status IN ('queued', 'running')
            RETURNING job_id
            """,
            result.execution_id,
            result.status,
            result.started_at,
            result.finished_at,
            result.worker,
            result.http_status,
            result.output_excerpt,
            result.error,
        )
        if job_id is None:
            return False
        await conn.execute(
            "UPDATE kjs_jobs SET status = $2, updated_at = now()"
            " WHERE job_id = $1 AND status = 'queued'",
            job_id,
            result.status,
        )
    return True


async def fire_due(
    pool: asyncpg.Pool,
    shard: int,
    epoch: int,
    job_ids: list[UUID],
    until: datetime,
    plan: Callable[[FiringJob], Fired],
) -> list[Fired]:
    """Lock the due jobs, let ``plan`` compute each occurrence, and write it, atomically."""
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, shard, epoch)
        jobs = await lock_firing(conn, shard, job_ids, until)
        fired = [plan(job) for job in jobs]
        if fired:
            await write_fired(conn, shard, fired)
    return fired

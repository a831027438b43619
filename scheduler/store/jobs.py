"""Storing created jobs (fenced)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from core.queries import QUERIES
from scheduler.model import NewJob
from scheduler.store.columns import columns
from scheduler.store.events import job_events
from scheduler.store.shards import fenced


async def insert_job(pool: asyncpg.Pool, epoch: int, job: NewJob) -> bool:
    """Insert a job once; a repeat (same job_id, or same user and idempotency key) is a no-op."""
    return job.job_id in await insert_jobs(pool, job.shard, epoch, [job])


async def insert_jobs(pool: asyncpg.Pool, shard: int, epoch: int, jobs: list[NewJob]) -> set[UUID]:
    """Insert a shard's jobs in one fenced statement; returns the ids it inserted. A repeat
    (same job_id, or same user and idempotency key, in the table or earlier in ``jobs``) is
    skipped, so a redelivered batch inserts nothing twice."""
    async with fenced(pool, shard, epoch) as conn:
        rows = await conn.fetch(
            QUERIES["insert_jobs"],
            shard,
            *columns(
                jobs,
                "job_id",
                "user_id",
                "name",
                "idempotency_key",
                "schedule",
                "target",
                "priority",
                "retry",
                "next_run_at",
                "created_at",
                "source",
                "traceparent",
                "concurrency",
            ),
        )
        await job_events(conn, "job.created", [r["job_id"] for r in rows])
    return {r["job_id"] for r in rows}


async def job_exists(pool: asyncpg.Pool, job_id: UUID) -> bool:
    """Whether the job is stored (a redelivered create is not counted against quotas)."""
    return bool(await pool.fetchval(QUERIES["job_exists"], job_id))

"""A job's lifecycle commands (fenced): cancel, pause, resume, update, trigger, backfill."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from core.queries import QUERIES
from scheduler.model import Changed, PendingRun
from scheduler.store.events import job_change, job_events, job_execution_events
from scheduler.store.pending import add_backfill_runs, add_triggered_run
from scheduler.store.shards import fenced
from schemas.v1.statuses import ALLOWED_FROM, JobStatus

# The columns a lifecycle change may set, in the order of change_job's parameters $3 to $9.
CHANGEABLE = ("status", "next_run_at", "name", "schedule", "target", "priority", "retry")


async def _lock(
    conn: asyncpg.Connection,
    user_id: str,
    job_id: UUID,
    allowed_from: tuple[JobStatus, ...],
    refusal: Callable[[str], str],
) -> asyncpg.Record | str:
    """The tenant's job, locked until the transaction ends, if it is in one of
    ``allowed_from``; otherwise why not: ``unknown`` (no such job for this tenant), or
    ``refusal`` of its status."""
    row = await conn.fetchrow(QUERIES["lock_tenant_job"], job_id, user_id)
    if row is None:
        return "unknown"
    if row["status"] not in allowed_from:
        return refusal(row["status"])
    return row


async def cancel_job(pool: asyncpg.Pool, shard: int, epoch: int, user_id: str, job_id: UUID) -> str:
    """Cancel a job and its not-yet-started executions.

    Returns ``cancelled``, ``unknown`` (no such job for this tenant) or ``finished``.
    """
    async with fenced(pool, shard, epoch) as conn:
        job = await _lock(conn, user_id, job_id, ALLOWED_FROM["cancel"], lambda _: "finished")
        if isinstance(job, str):
            return job
        await conn.execute(QUERIES["cancel_job"], job_id)
        # A worker's claim only takes 'queued' rows, so this also wins inside the lead time.
        await conn.execute(QUERIES["cancel_unstarted_executions"], job_id)
        await job_events(conn, "job.cancelled", [job_id])
        await job_execution_events(conn, [job_id], "cancelled")
    return "cancelled"


async def change_job(
    pool: asyncpg.Pool,
    shard: int,
    epoch: int,
    user_id: str,
    job_id: UUID,
    allowed_from: tuple[JobStatus, ...],
    changes: Callable[[dict[str, Any]], dict[str, Any]],
    now: datetime,
) -> Changed | str:
    """Apply a lifecycle change to a job in one of ``allowed_from`` statuses (fenced).

    ``changes`` maps the locked row to the columns to set (those of ``CHANGEABLE``; others
    are ignored). Returns the job after the change, or ``unknown`` / ``illegal from
    <status>`` when refused. A pause also skips the runs fired ahead and not yet due at
    ``now``.
    """
    async with fenced(pool, shard, epoch) as conn:
        row = await _lock(conn, user_id, job_id, allowed_from, "illegal from {}".format)
        if isinstance(row, str):
            return row
        values = changes(dict(row))
        after = await conn.fetchrow(
            QUERIES["change_job"],
            job_id,
            [name for name in CHANGEABLE if name in values],
            *(values.get(name) for name in CHANGEABLE),
        )
        await job_events(conn, job_change(row["status"], after["status"]), [job_id])
        if after["status"] == "paused":
            await conn.execute(QUERIES["skip_runs_ahead_of_pause"], job_id, now)
            await job_execution_events(conn, [job_id], "skipped")
    return Changed(after["status"], after["next_run_at"], after["schedule"])


async def trigger_job(
    pool: asyncpg.Pool,
    shard: int,
    epoch: int,
    user_id: str,
    job_id: UUID,
    now: datetime,
    count_run: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    traceparent: str | None = None,
) -> PendingRun | str:
    """Add one extra run of a job, due now, as a pending run; ``unknown`` or ``cancelled``
    when refused.

    The extra run is an occurrence of its own (scheduled_for = now), so it never collides
    with a scheduled one, and a one-time job that had finished is 'queued' again.
    ``count_run`` (the executions-per-day quota) counts it in the same transaction, or
    raises to refuse it.
    """
    async with fenced(pool, shard, epoch) as conn:
        # Refused from 'cancelled' only, which it returns.
        job = await _lock(conn, user_id, job_id, ALLOWED_FROM["trigger"], str)
        if isinstance(job, str):
            return job
        if count_run is not None:
            await count_run(conn)
        run = await add_triggered_run(
            conn, shard, user_id, job_id, job["priority"], now, traceparent
        )
        await conn.execute(QUERIES["requeue_finished_once_job"], job_id)
    return run


async def backfill_job(
    pool: asyncpg.Pool,
    shard: int,
    epoch: int,
    user_id: str,
    job_id: UUID,
    plan: Callable[[asyncpg.Record], tuple[list[datetime], bool]],
    now: datetime,
    count_runs: Callable[[asyncpg.Connection, int], Awaitable[None]] | None = None,
) -> list[PendingRun] | str:
    """Store a backfill's runs; returns those due now, or ``unknown`` / ``cancelled``.

    ``plan`` maps the locked job to the occurrences to run and whether they run one at a
    time; it raises to refuse the backfill, and nothing is written. ``count_runs`` (the
    executions-per-day quota) counts the runs stored, in the same transaction, or raises
    to refuse them all.
    """
    async with fenced(pool, shard, epoch) as conn:
        job = await _lock(conn, user_id, job_id, ALLOWED_FROM["backfill"], str)
        if isinstance(job, str):
            return job
        occurrences, serial = plan(job)
        stored, due = await add_backfill_runs(conn, shard, job, occurrences, serial, now)
        if count_runs is not None:
            await count_runs(conn, stored)
    return due

"""Firing due jobs into execution rows (fenced), and the outbox of their due events.

What firing a job means (catch-up, ``max_runs``, overlap, jitter) is decided in Python by
``scheduler.firing.plan``; this module locks the jobs it decides about and writes what it
decided, in one transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from uuid import UUID

import asyncpg

from core.queries import QUERIES
from scheduler.model import DueJob, Fired, FiringJob, Occurrence
from scheduler.store.events import SWITCH, job_execution_events
from scheduler.store.shards import fenced
from schemas.v1.ids import execution_id_for

# Holds back, in the caller's transaction, executions just queued that are over a concurrency
# limit; returns their ids (scheduler.concurrency.ConcurrencyGate.hold).
Hold = Callable[[asyncpg.Connection, list[Occurrence]], Awaitable[set[UUID]]]


async def due_jobs(pool: asyncpg.Pool, shard: int, until: datetime) -> list[DueJob]:
    """The shard's scheduled jobs due by ``until`` (the timer's window)."""
    rows = await pool.fetch(QUERIES["due_jobs"], shard, until)
    return [DueJob(r["job_id"], r["next_run_at"], r["schedule"]) for r in rows]


async def fire_due(
    pool: asyncpg.Pool,
    shard: int,
    epoch: int,
    job_ids: list[UUID],
    until: datetime,
    plan: Callable[[FiringJob], Fired],
    ration: Callable[[asyncpg.Connection, list[Fired]], Awaitable[list[Fired]]] | None = None,
    hold: Hold | None = None,
) -> list[Fired]:
    """Lock the due jobs, let ``plan`` compute each occurrence, and write it, atomically.

    ``ration`` (the executions-per-day quota) may trim the planned runs, in the same
    transaction, so the day's count and the execution rows commit together. ``hold`` (the
    concurrency limits) then holds back written executions over a limit: they are left out
    of the returned occurrences, which are the ones to dispatch.
    """
    async with fenced(pool, shard, epoch) as conn:
        jobs = await lock_firing(conn, shard, job_ids, until)
        fired = [plan(job) for job in jobs]
        if fired and ration is not None:
            fired = await ration(conn, fired)
        if fired:
            await write_fired(conn, shard, fired)
        if fired and hold is not None:
            held = await hold(conn, [o for f in fired for o in f.occurrences])
            if held:
                fired = [
                    replace(f, occurrences=[o for o in f.occurrences if o.execution_id not in held])
                    for f in fired
                ]
    return fired


async def lock_firing(
    conn: asyncpg.Connection, shard: int, job_ids: list[UUID], until: datetime
) -> list[FiringJob]:
    """Lock those of ``job_ids`` still scheduled and due by ``until``."""
    rows = await conn.fetch(QUERIES["lock_firing_jobs"], job_ids, shard, until)
    return [FiringJob(**dict(r)) for r in rows]


async def write_fired(conn: asyncpg.Connection, shard: int, fired: list[Fired]) -> None:
    """Write the execution rows and move each job on, in batched statements.

    1. Cancel the not-finished executions of jobs whose overlap policy is ``replace``.
    2. Insert the fired occurrences as 'queued' and the recorded skips as 'skipped'.
    3. Move each job to its next run (or 'queued' when no run is left), counting runs and
       skips, and remember a buffered occurrence.
    """
    replaced = [f.job_id for f in fired if f.cancel_active]
    if replaced:
        await conn.execute(QUERIES["cancel_replaced_executions"], replaced)
        await job_execution_events(conn, replaced, "cancelled")
    occ = [o for f in fired for o in f.occurrences]
    skips = [(f, s) for f in fired for s in f.skipped]
    await conn.execute(
        QUERIES["insert_fired_executions"],
        [o.execution_id for o in occ]
        + [execution_id_for(f.job_id, k.scheduled_for, 1) for f, k in skips],
        [o.job_id for o in occ] + [f.job_id for f, _ in skips],
        [o.user_id for o in occ] + [f.user_id for f, _ in skips],
        shard,
        [o.scheduled_for for o in occ] + [k.scheduled_for for _, k in skips],
        [o.attempt for o in occ] + [1 for _ in skips],
        [o.lane for o in occ] + [f.lane for f, _ in skips],
        ["queued" for _ in occ] + ["skipped" for _ in skips],
        [o.due_at for o in occ] + [None for _ in skips],
        [None for _ in occ] + [k.reason for _, k in skips],
        [o.traceparent for o in occ] + [None for _ in skips],
    )
    if SWITCH.on:  # the hot path: off, not even the lists below
        await job_execution_events(conn, [f.job_id for f in fired if f.occurrences], "queued")
        await job_execution_events(conn, [f.job_id for f in fired if f.skipped], "skipped")
    await conn.execute(
        QUERIES["advance_fired_jobs"],
        [f.job_id for f in fired],
        [f.next_run_at for f in fired],
        [len(f.occurrences) for f in fired],
        [f.skipped_total for f in fired],
        [f.buffer for f in fired],
    )


async def undispatched(pool: asyncpg.Pool, shard: int, age_s: float) -> list[Occurrence]:
    """Executions written more than ``age_s`` ago (by the database's clock, which stamped
    them) but never acknowledged by Kafka: the outbox to re-send."""
    rows = await pool.fetch(QUERIES["undispatched_executions"], shard, age_s)
    return [Occurrence(**dict(r)) for r in rows]


async def mark_dispatched(
    pool: asyncpg.Pool, shard: int, epoch: int, execution_ids: list[UUID]
) -> None:
    """Kafka acknowledged these executions' due events: out of the outbox (fenced, like
    every write of a shard).

    A fenced-out owner leaves them in: the new owner re-sends them, and a duplicate due
    event is harmless. Unfenced, a late mark could land on a row the new owner has re-queued
    (a lapsed lease) and not sent yet, and hide it from the outbox.
    """
    async with fenced(pool, shard, epoch) as conn:
        await conn.execute(QUERIES["mark_dispatched"], execution_ids)


async def overdue(pool: asyncpg.Pool, shard: int, now: datetime) -> int:
    """Jobs and pending runs due more than a second before ``now`` and not fired: the
    stage's depth."""
    n: int = await pool.fetchval(QUERIES["count_overdue"], shard, now)
    return n

"""Pending runs: executions stored as 'pending' with a ``due_at``, which the shard's timer
queues and dispatches when they are due, like a first fire.

Four things make one: a retry of a failed attempt (:func:`add_retry`, due after its
backoff), a triggered run (:func:`add_triggered_run`, due now), the run an
``overlap = buffer_one`` job kept while the previous one ran (:func:`release_buffered_run`,
due when that one finishes) and a backfill's runs of past occurrences
(:func:`add_backfill_runs`). The ``add``/``release`` functions run inside the caller's
fenced transaction; :func:`queue_pending` is a fenced transaction of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from core.queries import QUERIES
from scheduler.model import Occurrence, PendingRun
from scheduler.store.events import SWITCH, execution_events
from scheduler.store.firing import Hold
from scheduler.store.shards import fenced
from schemas.v1.ids import execution_id_for

MICROSECOND = timedelta(microseconds=1)


async def add_retry(
    conn: asyncpg.Connection,
    shard: int,
    failed: asyncpg.Record,
    delay_s: float,
    now: datetime,
) -> PendingRun | None:
    """Attempt n+1 of the ``failed`` attempt's occurrence (its execution row: job_id,
    user_id, scheduled_for, attempt, lane, traceparent), due ``delay_s`` after ``now``, in
    the same trace; ``None`` when it was stored before (a redelivered result)."""
    execution_id = execution_id_for(
        failed["job_id"], failed["scheduled_for"], failed["attempt"] + 1
    )
    due_at: datetime | None = await conn.fetchval(
        QUERIES["insert_retry"],
        execution_id,
        failed["job_id"],
        failed["user_id"],
        shard,
        failed["scheduled_for"],
        failed["attempt"] + 1,
        failed["lane"],
        delay_s,
        now,
        failed["traceparent"],
    )
    await execution_events(conn, [execution_id], "execution.retry_scheduled")
    return PendingRun(execution_id, due_at) if due_at else None


async def release_buffered_run(
    conn: asyncpg.Connection, shard: int, finished: asyncpg.Record, now: datetime
) -> PendingRun | None:
    """overlap = buffer_one: the run that ``finished`` (its execution row) lets the buffered
    occurrence of its job go, at ``now`` or its own time if later; ``None`` when the job
    had none."""
    buffered = await conn.fetchval(QUERIES["take_buffered_run"], finished["job_id"])
    if buffered is None:
        return None
    execution_id = execution_id_for(finished["job_id"], buffered, 1)
    due_at: datetime | None = await conn.fetchval(
        QUERIES["insert_buffered_run"],
        execution_id,
        finished["job_id"],
        finished["user_id"],
        shard,
        buffered,
        finished["lane"],
        now,
    )
    await execution_events(conn, [execution_id])
    return PendingRun(execution_id, due_at) if due_at else None


async def add_backfill_runs(
    conn: asyncpg.Connection,
    shard: int,
    job: asyncpg.Record,
    occurrences: list[datetime],
    serial: bool,
    now: datetime,
) -> tuple[int, list[PendingRun]]:
    """A backfill of ``job`` (its locked row): a pending run of each occurrence that has no
    execution yet, marked as a backfill; returns how many it stored, and the runs due now.

    Allowed to overlap, they are all due now, a microsecond apart in occurrence order, so
    the timer dispatches them in that order. Serial (any other overlap policy), they wait
    with no due time, and the first is released now; each next one when the previous one
    finishes (:func:`release_backfill_run`).
    """
    job_id = job["job_id"]
    due = [None if serial else now + i * MICROSECOND for i in range(len(occurrences))]
    stored = await conn.fetch(
        QUERIES["insert_backfill_runs"],
        [execution_id_for(job_id, at, 1) for at in occurrences],
        job_id,
        job["user_id"],
        shard,
        occurrences,
        due,
        job["priority"],
    )
    if serial:
        released = await release_backfill_run(conn, job_id, now)
        return len(stored), [released] if released else []
    return len(stored), [PendingRun(r["execution_id"], r["due_at"]) for r in stored]


async def release_backfill_run(
    conn: asyncpg.Connection, job_id: UUID, now: datetime
) -> PendingRun | None:
    """A serial backfill's next run, due ``now``, unless one of its runs is still out."""
    row = await conn.fetchrow(QUERIES["release_backfill_run"], job_id, now)
    return PendingRun(row["execution_id"], row["due_at"]) if row else None


async def add_triggered_run(
    conn: asyncpg.Connection,
    shard: int,
    user_id: str,
    job_id: UUID,
    lane: str,
    now: datetime,
    traceparent: str | None = None,
) -> PendingRun:
    """One extra run of a job, an occurrence of its own (scheduled_for = ``now``, so it never
    collides with a scheduled one), due now, in the trigger command's trace."""
    execution_id = execution_id_for(job_id, now, 1)
    await conn.execute(
        QUERIES["insert_triggered_run"],
        execution_id,
        job_id,
        user_id,
        shard,
        now,
        lane,
        traceparent,
    )
    await execution_events(conn, [execution_id])
    return PendingRun(execution_id, now)


async def due_pending(pool: asyncpg.Pool, shard: int, until: datetime) -> list[PendingRun]:
    """The shard's pending runs due by ``until`` (the timer's window)."""
    rows = await pool.fetch(QUERIES["due_pending_runs"], shard, until)
    return [PendingRun(r["execution_id"], r["due_at"]) for r in rows]


async def queue_pending(
    pool: asyncpg.Pool,
    shard: int,
    epoch: int,
    execution_ids: list[UUID],
    until: datetime,
    hold: Hold | None = None,
) -> list[Occurrence]:
    """Move due pending runs from 'pending' to 'queued' (fenced); returns what to dispatch:
    not those ``hold`` (the concurrency limits) held back."""
    async with fenced(pool, shard, epoch) as conn:
        rows = await conn.fetch(QUERIES["queue_pending_runs"], execution_ids, shard, until)
        if SWITCH.on:
            await execution_events(conn, [r["execution_id"] for r in rows])
        # In due order, which is occurrence order for a backfill's runs (UPDATE returns in any).
        queued = sorted(
            (Occurrence(**dict(r)) for r in rows), key=lambda o: o.due_at or o.scheduled_for
        )
        # A run held back here has its 'execution.pending' event from the hold.
        held = await hold(conn, queued) if hold is not None and queued else set()
    return [o for o in queued if o.execution_id not in held]

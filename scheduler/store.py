"""Every Postgres write a scheduler shard makes, each one fenced by the shard's epoch.

The fence is a ``SELECT ... FOR SHARE`` of the shard's row at the start of each write
transaction. A new owner's epoch bump is an ``UPDATE`` of that row, so it waits for the old
owner's in-flight transactions, and every later transaction of the old owner finds the new
epoch and raises :class:`Fenced` before it writes anything (invariant 3).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from schemas.v1.events import ResultEvent
from schemas.v1.ids import execution_id_for


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
    schedule: dict[str, Any]


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
    # Set for a retry: it must not start before its backoff ends.
    due_at: datetime | None = None


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
    run_count: int
    # An execution of this job is still pending, queued or running (for the overlap policy).
    busy: bool
    buffered_for: datetime | None


@dataclass(frozen=True)
class Skip:
    scheduled_for: datetime
    reason: str


@dataclass(frozen=True)
class Fired:
    """What to write for one due job: the occurrences to dispatch, those skipped, and the
    job's next state."""

    job_id: UUID
    user_id: str
    lane: str
    occurrences: list[Occurrence]
    next_run_at: datetime | None
    skipped: list[Skip] = field(default_factory=list)
    # Skipped in all, including those beyond the ones recorded as rows.
    skipped_total: int = 0
    cancel_active: bool = False
    buffer: datetime | None = None
    # next_run_at plus its jitter: when the timer must fire it.
    next_due: datetime | None = None
    # Fire the next run close to its instant, not a lead ahead (firing.fires_close).
    close: bool = False


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
    return job.job_id in await insert_jobs(pool, job.shard, epoch, [job])


async def insert_jobs(pool: asyncpg.Pool, shard: int, epoch: int, jobs: list[NewJob]) -> set[UUID]:
    """Insert a shard's jobs in one fenced statement; returns the ids it inserted. A repeat
    (same job_id, or same user and idempotency key, in the table or earlier in ``jobs``) is
    skipped, so a redelivered batch inserts nothing twice."""
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, shard, epoch)
        rows = await conn.fetch(
            """
            INSERT INTO kjs_jobs (job_id, user_id, shard, name, idempotency_key, schedule,
                                  target, priority, retry, status, next_run_at, created_at,
                                  updated_at, source)
            SELECT j, u, $1, n, k, s, t, p, r, 'scheduled', nx, c, c, src
            FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[],
                        $7::jsonb[], $8::text[], $9::jsonb[], $10::timestamptz[],
                        $11::timestamptz[], $12::text[])
                 AS t(j, u, n, k, s, t, p, r, nx, c, src)
            ON CONFLICT DO NOTHING
            RETURNING job_id
            """,
            shard,
            [j.job_id for j in jobs],
            [j.user_id for j in jobs],
            [j.name for j in jobs],
            [j.idempotency_key for j in jobs],
            [j.schedule for j in jobs],
            [j.target for j in jobs],
            [j.priority for j in jobs],
            [j.retry for j in jobs],
            [j.next_run_at for j in jobs],
            [j.created_at for j in jobs],
            [j.source for j in jobs],
        )
    return {r["job_id"] for r in rows}


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
            " WHERE job_id = $1 AND status IN ('pending', 'queued')",
            job_id,
        )
    return "cancelled"


@dataclass(frozen=True)
class Changed:
    status: str
    next_run_at: datetime | None
    schedule: dict[str, Any]


# The columns a lifecycle change may set (the SQL below interpolates only these names).
CHANGEABLE = ("status", "next_run_at", "name", "schedule", "target", "priority", "retry")


async def change_job(
    pool: asyncpg.Pool,
    shard: int,
    epoch: int,
    user_id: str,
    job_id: UUID,
    allowed_from: tuple[str, ...],
    changes: Callable[[dict[str, Any]], dict[str, Any]],
) -> Changed | str:
    """Apply a lifecycle change to a job in one of ``allowed_from`` statuses (fenced).

    ``changes`` maps the locked row to the columns to set. Returns the job after the change,
    or ``unknown`` / ``illegal from <status>`` when refused.
    """
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, shard, epoch)
        row = await conn.fetchrow(
            "SELECT * FROM kjs_jobs WHERE job_id = $1 AND user_id = $2 FOR UPDATE", job_id, user_id
        )
        if row is None:
            return "unknown"
        if row["status"] not in allowed_from:
            return f"illegal from {row['status']}"
        values = changes(dict(row))
        names = [name for name in values if name in CHANGEABLE]
        assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
        after = await conn.fetchrow(
            f"UPDATE kjs_jobs SET {assignments}, updated_at = now() WHERE job_id = $1"
            " RETURNING status, next_run_at, schedule",
            job_id,
            *(values[name] for name in names),
        )
        if after["status"] == "paused":
            # Occurrences fired ahead (the lead) but not yet due: a pause lands before them,
            # as it would have before the lead existed. A worker's claim only takes 'queued'
            # rows, so this wins until the claim, a second before the instant.
            await conn.execute(
                "UPDATE kjs_executions SET status = 'skipped', finished_at = now(),"
                " error = 'paused: the job was paused before this run started'"
                " WHERE job_id = $1 AND status = 'queued' AND scheduled_for > now()",
                job_id,
            )
    return Changed(after["status"], after["next_run_at"], after["schedule"])


async def due_jobs(pool: asyncpg.Pool, shard: int, until: datetime) -> list[DueJob]:
    rows = await pool.fetch(
        "SELECT job_id, next_run_at, schedule FROM kjs_jobs"
        " WHERE shard = $1 AND status = 'scheduled' AND next_run_at <= $2",
        shard,
        until,
    )
    return [DueJob(r["job_id"], r["next_run_at"], r["schedule"]) for r in rows]


async def lock_firing(
    conn: asyncpg.Connection, shard: int, job_ids: list[UUID], until: datetime
) -> list[FiringJob]:
    rows = await conn.fetch(
        """
        SELECT j.job_id, j.user_id, j.schedule, j.target, j.priority, j.next_run_at,
               j.created_at, j.run_count, j.buffered_for,
               EXISTS (SELECT 1 FROM kjs_executions e WHERE e.job_id = j.job_id
                       AND e.status IN ('pending', 'queued', 'running')) AS busy
        FROM kjs_jobs j
        WHERE j.job_id = ANY($1::uuid[]) AND j.shard = $2 AND j.status = 'scheduled'
          AND j.next_run_at <= $3
        FOR UPDATE OF j
        """,
        job_ids,
        shard,
        until,
    )
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
        await conn.execute(
            "UPDATE kjs_executions SET status = 'cancelled', finished_at = now(),"
            " error = 'replaced by a newer run (overlap = replace)'"
            " WHERE job_id = ANY($1::uuid[]) AND status IN ('pending', 'queued', 'running')",
            replaced,
        )
    occ = [o for f in fired for o in f.occurrences]
    skips = [(f, s) for f in fired for s in f.skipped]
    await conn.execute(
        """
        INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                                    attempt, lane, status, due_at, finished_at, error)
        SELECT e, j, u, $4, s, a, l, st, d,
               CASE WHEN st = 'skipped' THEN now() END, err
        FROM unnest($1::uuid[], $2::uuid[], $3::text[], $5::timestamptz[], $6::int[],
                    $7::text[], $8::text[], $9::timestamptz[], $10::text[])
             AS t(e, j, u, s, a, l, st, d, err)
        ON CONFLICT DO NOTHING
        """,
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
    )
    await conn.execute(
        """
        UPDATE kjs_jobs AS j
        SET next_run_at = t.n,
            status = CASE WHEN t.n IS NULL THEN 'queued' ELSE 'scheduled' END,
            run_count = j.run_count + t.runs,
            skipped_runs = j.skipped_runs + t.skips,
            buffered_for = COALESCE(t.buf, j.buffered_for),
            updated_at = now()
        FROM unnest($1::uuid[], $2::timestamptz[], $3::int[], $4::int[], $5::timestamptz[])
             AS t(id, n, runs, skips, buf)
        WHERE j.job_id = t.id
        """,
        [f.job_id for f in fired],
        [f.next_run_at for f in fired],
        [len(f.occurrences) for f in fired],
        [f.skipped_total for f in fired],
        [f.buffer for f in fired],
    )


async def undispatched(
    pool: asyncpg.Pool, shard: int, created_before: datetime
) -> list[Occurrence]:
    """Executions written but never acknowledged by Kafka: the outbox to re-send."""
    rows = await pool.fetch(
        """
        SELECT e.execution_id, e.job_id, e.user_id, e.attempt, e.scheduled_for, e.lane, j.target,
               e.due_at
        FROM kjs_executions e JOIN kjs_jobs j USING (job_id)
        WHERE e.shard = $1 AND e.status = 'queued' AND e.dispatched_at IS NULL
          AND e.created_at < $2
        ORDER BY e.scheduled_for
        """,
        shard,
        created_before,
    )
    return [Occurrence(**dict(r)) for r in rows]


async def requeue_expired(pool: asyncpg.Pool, shard: int, epoch: int) -> list[Occurrence]:
    """Put back executions whose worker stopped extending its lease (it died mid-run).

    They return to 'queued' and are dispatched again with the same execution id, so the
    target sees the same Idempotency-Key: completion is at least once, and a target that
    honours the key does the work once.
    """
    # Asked every second per shard, and almost always "none": one indexed read first, and
    # the fenced transaction (four round trips) only when there is something to re-queue.
    lapsed = await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM kjs_executions WHERE shard = $1 AND status = 'running'"
        " AND lease_until < now())",
        shard,
    )
    if not lapsed:
        return []
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, shard, epoch)
        rows = await conn.fetch(
            """
            UPDATE kjs_executions AS e
            SET status = 'queued', dispatched_at = NULL, started_at = NULL, worker = NULL,
                lease_until = NULL
            FROM kjs_jobs AS j
            WHERE e.shard = $1 AND e.status = 'running' AND e.lease_until < now()
              AND j.job_id = e.job_id
            RETURNING e.execution_id, e.job_id, e.user_id, e.attempt, e.scheduled_for, e.lane,
                      j.target, e.due_at
            """,
            shard,
        )
    return [Occurrence(**dict(r)) for r in rows]


async def mark_dispatched(
    pool: asyncpg.Pool, shard: int, epoch: int, execution_ids: list[UUID]
) -> None:
    """Take acknowledged executions out of the outbox (fenced, like every write of a shard).

    A fenced-out owner leaves them in: the new owner re-sends them, and a duplicate due
    event is harmless. Unfenced, a late mark could land on a row the new owner has re-queued
    (a lapsed lease) and not sent yet, and hide it from the outbox.
    """
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, shard, epoch)
        await conn.execute(
            "UPDATE kjs_executions SET dispatched_at = now()"
            " WHERE execution_id = ANY($1::uuid[]) AND dispatched_at IS NULL",
            execution_ids,
        )


@dataclass(frozen=True)
class Failure:
    """A failed attempt, as the retry decision needs it."""

    execution_id: UUID
    job_id: UUID
    attempt: int
    retry: dict[str, Any]
    result: ResultEvent


@dataclass(frozen=True)
class Recorded:
    """What recording a result led to: a retry due at some time, or the job giving up."""

    retry: DueRetry | None = None
    exhausted: Failure | None = None


@dataclass(frozen=True)
class DueRetry:
    execution_id: UUID
    due_at: datetime


async def record_result(
    pool: asyncpg.Pool,
    shard: int,
    epoch: int,
    result: ResultEvent,
    delay_for: Callable[[Failure], float | None],
    on_exhausted: Callable[[Failure], Awaitable[None]],
) -> Recorded | None:
    """Record a worker's outcome once; ``None`` when it was already recorded.

    1. Fence, then move the execution from queued/running to the result's status. No row
       moved means a redelivered result: nothing else happens.
    2. Succeeded: a one-time job takes the status. A recurring job stays scheduled; its
       next occurrence was planned when this one fired.
    3. Failed, job not cancelled, ``delay_for`` gives a delay (retryable, attempts left):
       insert the next attempt as 'pending', due after the backoff. The shard's timer
       queues and dispatches it then.
    4. Otherwise the occurrence has failed for good: a one-time job becomes 'failed', and
       ``on_exhausted`` (the dead letter) is awaited *before* the commit, so a crash can
       repeat the dead letter but never lose it.
    """
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, shard, epoch)
        row = await conn.fetchrow(
            """
            UPDATE kjs_executions
            SET status = $2, started_at = COALESCE($3, started_at), finished_at = $4,
                worker = COALESCE(worker, $5), http_status = $6, output_excerpt = $7,
                error = $8, lease_until = NULL
            WHERE execution_id = $1 AND status IN ('queued', 'running')
            RETURNING job_id, attempt, scheduled_for, lane, user_id
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
        if row is None:
            return None
        job = await conn.fetchrow(
            "SELECT status, retry FROM kjs_jobs WHERE job_id = $1 FOR UPDATE", row["job_id"]
        )
        if result.status == "succeeded":
            await _settle_once_job(conn, row["job_id"], "succeeded")
            return Recorded(retry=await _release_buffered(conn, row, shard))
        failure = Failure(result.execution_id, row["job_id"], row["attempt"], job["retry"], result)
        delay = None if job["status"] == "cancelled" else delay_for(failure)
        if delay is not None:
            retry_id = execution_id_for(row["job_id"], row["scheduled_for"], row["attempt"] + 1)
            due_at: datetime = await conn.fetchval(
                """
                INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                                            attempt, lane, status, due_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending',
                        now() + make_interval(secs => $8))
                ON CONFLICT DO NOTHING
                RETURNING due_at
                """,
                retry_id,
                row["job_id"],
                row["user_id"],
                shard,
                row["scheduled_for"],
                row["attempt"] + 1,
                row["lane"],
                delay,
            )
            return Recorded(retry=DueRetry(retry_id, due_at) if due_at else None)
        await _settle_once_job(conn, row["job_id"], "failed")
        await on_exhausted(failure)
        return Recorded(retry=await _release_buffered(conn, row, shard), exhausted=failure)


async def _release_buffered(conn: asyncpg.Connection, row: Any, shard: int) -> DueRetry | None:
    """overlap = buffer_one: the run that finished lets the buffered occurrence go, now."""
    buffered = await conn.fetchval(
        """
        WITH old AS (SELECT buffered_for FROM kjs_jobs WHERE job_id = $1)
        UPDATE kjs_jobs AS j SET buffered_for = NULL FROM old
        WHERE j.job_id = $1 AND old.buffered_for IS NOT NULL
        RETURNING old.buffered_for
        """,
        row["job_id"],
    )
    if buffered is None:
        return None
    execution_id = execution_id_for(row["job_id"], buffered, 1)
    due_at: datetime = await conn.fetchval(
        """
        INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                                    attempt, lane, status, due_at)
        VALUES ($1, $2, $3, $4, $5, 1, $6, 'pending', GREATEST(now(), $5))
        ON CONFLICT DO NOTHING
        RETURNING due_at
        """,
        execution_id,
        row["job_id"],
        row["user_id"],
        shard,
        buffered,
        row["lane"],
    )
    return DueRetry(execution_id, due_at) if due_at else None


async def record_successes(
    pool: asyncpg.Pool, shard: int, epoch: int, results: list[ResultEvent]
) -> list[ResultEvent]:
    """The common case in bulk: record successful results in one fenced transaction.

    Returns the results it did not take: those whose job has a buffered run to release
    (overlap = buffer_one), which go through :func:`record_result` one by one. Redelivered
    results change nothing, as in the one-by-one path.
    """
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, shard, epoch)
        buffered = {
            r["execution_id"]
            for r in await conn.fetch(
                """
                SELECT e.execution_id FROM kjs_executions e JOIN kjs_jobs j USING (job_id)
                WHERE e.execution_id = ANY($1::uuid[]) AND j.buffered_for IS NOT NULL
                """,
                [r.execution_id for r in results],
            )
        }
        bulk = [r for r in results if r.execution_id not in buffered]
        if bulk:
            jobs = await conn.fetch(
                """
                UPDATE kjs_executions AS e
                SET status = 'succeeded', started_at = COALESCE(t.started, e.started_at),
                    finished_at = t.finished, worker = COALESCE(e.worker, t.worker),
                    http_status = t.http, output_excerpt = t.excerpt, error = NULL,
                    lease_until = NULL
                FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::text[],
                            $5::int[], $6::text[])
                     AS t(id, started, finished, worker, http, excerpt)
                WHERE e.execution_id = t.id AND e.status IN ('queued', 'running')
                RETURNING e.job_id
                """,
                [r.execution_id for r in bulk],
                [r.started_at for r in bulk],
                [r.finished_at for r in bulk],
                [r.worker for r in bulk],
                [r.http_status for r in bulk],
                [r.output_excerpt for r in bulk],
            )
            await conn.execute(
                "UPDATE kjs_jobs SET status = 'succeeded', updated_at = now()"
                " WHERE job_id = ANY($1::uuid[]) AND status = 'queued'",
                [r["job_id"] for r in jobs],
            )
    return [r for r in results if r.execution_id in buffered]


async def _settle_once_job(conn: asyncpg.Connection, job_id: UUID, status: str) -> None:
    # Only a one-time job is 'queued' (its single occurrence is out); recurring ones and
    # cancelled ones are left as they are.
    await conn.execute(
        "UPDATE kjs_jobs SET status = $2, updated_at = now()"
        " WHERE job_id = $1 AND status = 'queued'",
        job_id,
        status,
    )


async def overdue(pool: asyncpg.Pool, shard: int) -> int:
    """Jobs and retries due more than a second ago and not fired: the stage's depth."""
    n: int = await pool.fetchval(
        """
        SELECT (SELECT count(*) FROM kjs_jobs WHERE shard = $1 AND status = 'scheduled'
                  AND next_run_at < now() - interval '1 second')
             + (SELECT count(*) FROM kjs_executions WHERE shard = $1 AND status = 'pending'
                  AND due_at < now() - interval '1 second')
        """,
        shard,
    )
    return n


async def due_retries(pool: asyncpg.Pool, shard: int, until: datetime) -> list[DueRetry]:
    rows = await pool.fetch(
        "SELECT execution_id, due_at FROM kjs_executions"
        " WHERE shard = $1 AND status = 'pending' AND due_at <= $2",
        shard,
        until,
    )
    return [DueRetry(r["execution_id"], r["due_at"]) for r in rows]


async def queue_retries(
    pool: asyncpg.Pool, shard: int, epoch: int, execution_ids: list[UUID], until: datetime
) -> list[Occurrence]:
    """Move due retries from 'pending' to 'queued' (fenced); returns what to dispatch."""
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, shard, epoch)
        rows = await conn.fetch(
            """
            UPDATE kjs_executions AS e SET status = 'queued'
            FROM kjs_jobs AS j
            WHERE e.execution_id = ANY($1::uuid[]) AND e.shard = $2 AND e.status = 'pending'
              AND e.due_at <= $3 AND j.job_id = e.job_id
            RETURNING e.execution_id, e.job_id, e.user_id, e.attempt, e.scheduled_for, e.lane,
                      j.target, e.due_at
            """,
            execution_ids,
            shard,
            until,
        )
    return [Occurrence(**dict(r)) for r in rows]


async def trigger_job(
    pool: asyncpg.Pool,
    shard: int,
    epoch: int,
    user_id: str,
    job_id: UUID,
    now: datetime,
    count_run: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> DueRetry | str:
    """Add one extra run of a job, due now; ``unknown`` or ``cancelled`` when refused.

    The extra run is an occurrence of its own (scheduled_for = now), so it never collides
    with a scheduled one, and a one-time job that had finished is 'queued' again.
    ``count_run`` (the executions-per-day quota) counts it in the same transaction, or
    raises to refuse it.
    """
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, shard, epoch)
        job = await conn.fetchrow(
            "SELECT status, priority FROM kjs_jobs WHERE job_id = $1 AND user_id = $2 FOR UPDATE",
            job_id,
            user_id,
        )
        if job is None:
            return "unknown"
        if job["status"] == "cancelled":
            return "cancelled"
        if count_run is not None:
            await count_run(conn)
        execution_id = execution_id_for(job_id, now, 1)
        await conn.execute(
            """
            INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                                        attempt, lane, status, due_at)
            VALUES ($1, $2, $3, $4, $5, 1, $6, 'pending', $5)
            ON CONFLICT DO NOTHING
            """,
            execution_id,
            job_id,
            user_id,
            shard,
            now,
            job["priority"],
        )
        await conn.execute(
            "UPDATE kjs_jobs SET status = 'queued', updated_at = now()"
            " WHERE job_id = $1 AND status IN ('succeeded', 'failed')",
            job_id,
        )
    return DueRetry(execution_id, now)


async def fire_due(
    pool: asyncpg.Pool,
    shard: int,
    epoch: int,
    job_ids: list[UUID],
    until: datetime,
    plan: Callable[[FiringJob], Fired],
    ration: Callable[[asyncpg.Connection, list[Fired]], Awaitable[list[Fired]]] | None = None,
) -> list[Fired]:
    """Lock the due jobs, let ``plan`` compute each occurrence, and write it, atomically.

    ``ration`` (the executions-per-day quota) may trim the planned runs, in the same
    transaction, so the day's count and the execution rows commit together.
    """
    async with pool.acquire() as conn, conn.transaction():
        await _fence(conn, shard, epoch)
        jobs = await lock_firing(conn, shard, job_ids, until)
        fired = [plan(job) for job in jobs]
        if fired and ration is not None:
            fired = await ration(conn, fired)
        if fired:
            await write_fired(conn, shard, fired)
    return fired

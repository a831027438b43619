"""Recording the workers' results (fenced): one by one, or a shard's successes in bulk."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

import asyncpg

from core.queries import QUERIES
from scheduler.model import Failure, PendingRun, Recorded
from scheduler.store.columns import columns
from scheduler.store.events import SWITCH, execution_events, job_events
from scheduler.store.pending import add_retry, release_backfill_run, release_buffered_run
from scheduler.store.shards import fenced
from schemas.v1.events import ResultEvent


async def record_result(
    pool: asyncpg.Pool,
    shard: int,
    epoch: int,
    result: ResultEvent,
    delay_for: Callable[[Failure], float | None],
    on_exhausted: Callable[[Failure], Awaitable[None]],
    now: datetime,
) -> Recorded | None:
    """Record a worker's outcome once; ``None`` when it was already recorded.

    1. Fence, then move the execution from queued/running to the result's status. No row
       moved means a redelivered result: nothing else happens.
    2. Succeeded: a one-time job takes the status. A recurring job stays scheduled; its
       next occurrence was planned when this one fired. A buffered run (or a serial
       backfill's next run) is released.
    3. Failed, job not cancelled, ``delay_for`` gives a delay (retryable, attempts left):
       insert the next attempt as a pending run, due the backoff after ``now``
       (``scheduler.store.pending.add_retry``). The shard's timer queues and dispatches it then.
    4. Otherwise the occurrence has failed for good: a one-time job becomes 'failed', and
       ``on_exhausted`` (the dead letter) is awaited *before* the commit, so a crash can
       repeat the dead letter but never lose it. A buffered or backfill run is released.
    """
    async with fenced(pool, shard, epoch) as conn:
        row = await conn.fetchrow(
            QUERIES["record_result"],
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
        await execution_events(conn, [result.execution_id])
        job = await conn.fetchrow(QUERIES["lock_job_for_result"], row["job_id"])
        if result.status == "succeeded":
            await _settle_once_jobs(conn, [row["job_id"]], "succeeded")
            return Recorded(released=await _release(conn, shard, row, now))
        failure = Failure(result.execution_id, row["job_id"], row["attempt"], job["retry"], result)
        delay = None if job["status"] == "cancelled" else delay_for(failure)
        if delay is not None:
            return Recorded(retry=await add_retry(conn, shard, row, delay, now))
        await execution_events(conn, [result.execution_id], "execution.dead_lettered")
        await _settle_once_jobs(conn, [row["job_id"]], "failed")
        await on_exhausted(failure)
        return Recorded(released=await _release(conn, shard, row, now), exhausted=failure)


async def record_successes(
    pool: asyncpg.Pool, shard: int, epoch: int, results: list[ResultEvent]
) -> list[ResultEvent]:
    """The common case in bulk: record successful results in one fenced transaction.

    Returns the results it did not take: those whose job has a buffered run to release
    (overlap = buffer_one) or a serial backfill's run waiting, which go through
    :func:`record_result` one by one. Redelivered results change nothing, as in the
    one-by-one path.
    """
    async with fenced(pool, shard, epoch) as conn:
        buffered = {
            r["execution_id"]
            for r in await conn.fetch(
                QUERIES["buffered_executions"], [r.execution_id for r in results]
            )
        }
        bulk = [r for r in results if r.execution_id not in buffered]
        if bulk:
            jobs = await conn.fetch(
                QUERIES["record_successes"],
                *columns(
                    bulk,
                    "execution_id",
                    "started_at",
                    "finished_at",
                    "worker",
                    "http_status",
                    "output_excerpt",
                ),
            )
            if SWITCH.on:
                await execution_events(conn, [r.execution_id for r in bulk])
            await _settle_once_jobs(conn, [r["job_id"] for r in jobs], "succeeded")
    return [r for r in results if r.execution_id in buffered]


async def _release(
    conn: asyncpg.Connection, shard: int, finished: asyncpg.Record, now: datetime
) -> PendingRun | None:
    """The run that ``finished`` lets go: the job's buffered occurrence, or else the next run
    of a serial backfill (the other one waits for the next run to finish)."""
    buffered = await release_buffered_run(conn, shard, finished, now)
    return buffered or await release_backfill_run(conn, finished["job_id"], now)


async def _settle_once_jobs(conn: asyncpg.Connection, job_ids: list[UUID], status: str) -> None:
    # Only a one-time job is 'queued' (its single occurrence is out); recurring ones and
    # cancelled ones are left as they are.
    await conn.execute(QUERIES["settle_once_jobs"], job_ids, status)
    await job_events(conn, "job.finished", job_ids, [status])

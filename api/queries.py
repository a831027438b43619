"""Every SQL statement the API runs, and the one place driver errors become domain errors.

The API only reads: job state is written by the shard's scheduler (the single writer).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import ParamSpec, TypeVar
from uuid import UUID

import asyncpg

from api.cursor import Cursor
from core.db import StoreUnavailable, is_unavailable
from core.quotas import ACTIVE_JOBS_SQL, DAILY_USAGE_SQL

P = ParamSpec("P")
R = TypeVar("R")


def _store_errors(query: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(query)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await query(*args, **kwargs)
        except StoreUnavailable:
            raise
        except Exception as exc:
            if is_unavailable(exc) or isinstance(exc, TimeoutError):
                raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
            raise

    return run


# A job's columns with its latest attempt's, by creation; the same-transaction ties go to the
# later occurrence. A queued job whose latest attempt runs shows as running.
_JOB_COLUMNS = """
SELECT j.job_id, j.user_id, j.name, j.next_run_at, j.run_count, j.created_at,
       j.schedule, j.target, j.priority, j.retry, j.idempotency_key,
       CASE WHEN j.status = 'queued' AND le.status = 'running' THEN 'running'
            ELSE j.status END AS status,
       le.execution_id AS le_execution_id, le.scheduled_for AS le_scheduled_for,
       le.attempt AS le_attempt, le.lane AS le_lane, le.status AS le_status,
       le.dispatched_at AS le_dispatched_at, le.started_at AS le_started_at,
       le.finished_at AS le_finished_at, le.worker AS le_worker,
       le.http_status AS le_http_status, le.output_excerpt AS le_output_excerpt,
       le.error AS le_error
"""

_LATEST_EXECUTION = """
LEFT JOIN LATERAL (
    SELECT * FROM kjs_executions e
    WHERE e.job_id = j.job_id
    ORDER BY e.created_at DESC, e.scheduled_for DESC, e.attempt DESC
    LIMIT 1
) le ON true
"""

_GET_JOB = _JOB_COLUMNS + "FROM kjs_jobs j" + _LATEST_EXECUTION + "WHERE j.job_id = $1"


@dataclass(frozen=True)
class JobFilter:
    """Which of a tenant's jobs a listing shows; None shows all."""

    # As the API shows it: "running" is a queued job whose latest attempt runs.
    status: str | None = None
    priority: str | None = None
    # The schedule's type: once, cron or interval.
    kind: str | None = None
    # A case-insensitive part of the name.
    name: str | None = None


def list_jobs_sql(jobs: JobFilter) -> str:
    """The listing's statement for this filter.

    Parameters: $1 user id, $2 and $3 the cursor, then the values of the filters in use in
    field order (the name lower-cased), then the limit. Only the filters in use are in the
    statement, so each combination gets its own plan on its own index (kjs_jobs_by_user, or
    0009's by status, lane or schedule type): a page is an index range walked newest first
    from the cursor, as fast at any depth as the first.
    """
    where = ["j.user_id = $1", "(j.created_at, j.job_id) < ($2, $3)"]
    n = 3
    for column, value in (
        ("j.status", jobs.status),
        ("j.priority", jobs.priority),
        ("j.schedule->>'type'", jobs.kind),
    ):
        if value is not None:
            n += 1
            where.append(f"{column} = ${n}")
    if jobs.name:
        n += 1
        where.append(f"strpos(lower(j.name), ${n}) > 0")
    limit = f"${n + 1}"
    order = "ORDER BY j.created_at DESC, j.job_id DESC"
    inner = f"SELECT * FROM kjs_jobs j WHERE {' AND '.join(where)} {order}"
    # Queued and running are both stored as queued; the latest attempt tells them apart, so
    # their limit applies after the join. Every other status shown is the stored one.
    outer = ""
    if jobs.status == "running":
        outer = "WHERE le.status = 'running' "
    elif jobs.status == "queued":
        outer = "WHERE le.status IS DISTINCT FROM 'running' "
    else:
        inner += f" LIMIT {limit}"
    return f"{_JOB_COLUMNS}FROM ({inner}) j{_LATEST_EXECUTION}{outer}{order} LIMIT {limit}"


_JOB_OWNER = "SELECT user_id, status FROM kjs_jobs WHERE job_id = $1"

_LIST_EXECUTIONS = """
SELECT execution_id, scheduled_for, attempt, lane, status, dispatched_at, started_at,
       finished_at, worker, http_status, output_excerpt, error, created_at, due_at
FROM kjs_executions
WHERE job_id = $1 AND (created_at, execution_id) < ($2, $3)
ORDER BY created_at DESC, execution_id DESC
LIMIT $4
"""


_GET_EXECUTION = """
SELECT execution_id, job_id, user_id, shard, scheduled_for, attempt, lane, status,
       dispatched_at, started_at, finished_at, worker, lease_until, http_status,
       output_excerpt, error, created_at, due_at
FROM kjs_executions
WHERE execution_id = $1
"""


@_store_errors
async def get_execution(pool: asyncpg.Pool, execution_id: UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(_GET_EXECUTION, execution_id)


@_store_errors
async def active_jobs(pool: asyncpg.Pool, user_id: str, cap: int) -> int:
    """The tenant's scheduled, paused and queued jobs, counted up to ``cap``."""
    return int(await pool.fetchval(ACTIVE_JOBS_SQL, user_id, cap))


@_store_errors
async def executions_today(pool: asyncpg.Pool, user_id: str, day: date) -> int:
    """The tenant's runs counted so far on ``day`` (UTC) by its owning shard."""
    return int(await pool.fetchval(DAILY_USAGE_SQL, user_id, day) or 0)


@_store_errors
async def get_job(pool: asyncpg.Pool, job_id: UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(_GET_JOB, job_id)


@_store_errors
async def job_owner(pool: asyncpg.Pool, job_id: UUID) -> asyncpg.Record | None:
    """(user_id, status) of a job: all that cancel and the executions listing need."""
    return await pool.fetchrow(_JOB_OWNER, job_id)


@_store_errors
async def list_jobs(
    pool: asyncpg.Pool, user_id: str, jobs: JobFilter, after: Cursor, limit: int
) -> list[asyncpg.Record]:
    """A page of the tenant's jobs, newest first, after the cursor (``list_jobs_sql``)."""
    sql = list_jobs_sql(jobs)
    values = [v for v in (jobs.status, jobs.priority, jobs.kind) if v is not None]
    if jobs.status in ("queued", "running"):
        values[0] = "queued"  # the stored status; the latest attempt tells them apart
    if jobs.name:
        values.append(jobs.name.lower())
    rows: list[asyncpg.Record] = await pool.fetch(
        sql, user_id, after.created_at, after.row_id, *values, limit
    )
    return rows


@_store_errors
async def list_executions(
    pool: asyncpg.Pool, job_id: UUID, after: Cursor, limit: int
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        _LIST_EXECUTIONS, job_id, after.created_at, after.row_id, limit
    )
    return rows


@_store_errors
async def ping(pool: asyncpg.Pool, timeout_s: float) -> None:
    # The timeout covers acquiring a connection too, which is where a down server hangs.
    async with asyncio.timeout(timeout_s):
        await pool.fetchval("SELECT 1")

"""Every read the API makes, and the one place driver errors become domain errors.

The API only reads: job state is written by the shard's scheduler (the single writer). The
statements are named in ``schemas/sql/queries.sql``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

import asyncpg

from api.cursor import Cursor
from core.db import StoreUnavailable, is_unavailable
from core.queries import QUERIES

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


@_store_errors
async def get_execution(pool: asyncpg.Pool, execution_id: UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(QUERIES["get_execution"], execution_id)


@_store_errors
async def active_jobs(pool: asyncpg.Pool, user_id: str, cap: int) -> int:
    """The tenant's scheduled, paused and queued jobs, counted up to ``cap``."""
    return int(await pool.fetchval(QUERIES["count_active_jobs"], user_id, cap))


@_store_errors
async def executions_today(pool: asyncpg.Pool, user_id: str, day: date) -> int:
    """The tenant's runs counted so far on ``day`` (UTC) by its owning shard."""
    return int(await pool.fetchval(QUERIES["daily_usage"], user_id, day) or 0)


@_store_errors
async def get_job(pool: asyncpg.Pool, job_id: UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(QUERIES["get_job"], job_id)


@_store_errors
async def job_owner(pool: asyncpg.Pool, job_id: UUID) -> asyncpg.Record | None:
    """(user_id, status, schedule, created_at) of a job: what cancel, the executions listing
    and a backfill's checks need."""
    return await pool.fetchrow(QUERIES["job_owner"], job_id)


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


@_store_errors
async def list_jobs(
    pool: asyncpg.Pool, user_id: str, jobs: JobFilter, after: Cursor, limit: int
) -> list[asyncpg.Record]:
    """A page of the tenant's jobs, newest first, after the cursor. The pool's connections
    plan each call for its own values (``create_pool(custom_plans=True)``), so a filter that
    is not given costs nothing and one that is can use its index (0009)."""
    rows: list[asyncpg.Record] = await pool.fetch(
        QUERIES["list_jobs"],
        user_id,
        after.created_at,
        after.row_id,
        jobs.status,
        jobs.priority,
        jobs.kind,
        jobs.name.lower() if jobs.name else None,
        limit,
    )
    return rows


@_store_errors
async def list_executions(
    pool: asyncpg.Pool, job_id: UUID, after: Cursor, limit: int
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        QUERIES["list_executions"], job_id, after.created_at, after.row_id, limit
    )
    return rows


@_store_errors
async def ping(pool: asyncpg.Pool, timeout_s: float) -> None:
    # The timeout covers acquiring a connection too, which is where a down server hangs.
    async with asyncio.timeout(timeout_s):
        await pool.fetchval(QUERIES["ping"])


# -- named calendars (api/handlers_calendars.py, api/calendars.py) ----------------------------


@_store_errors
async def insert_calendar(
    pool: asyncpg.Pool, user_id: str, name: str, rules: dict[str, Any]
) -> asyncpg.Record | None:
    """The new calendar's row; ``None`` when the tenant has one of that name already."""
    return await pool.fetchrow(QUERIES["insert_calendar"], user_id, name, rules)


@_store_errors
async def list_calendars(pool: asyncpg.Pool, user_id: str) -> list[asyncpg.Record]:
    return list(await pool.fetch(QUERIES["list_calendars"], user_id))


@_store_errors
async def get_calendar(pool: asyncpg.Pool, user_id: str, name: str) -> asyncpg.Record | None:
    return await pool.fetchrow(QUERIES["get_calendar"], user_id, name)


@_store_errors
async def delete_calendar(pool: asyncpg.Pool, user_id: str, name: str) -> bool:
    return await pool.fetchval(QUERIES["delete_calendar"], user_id, name) is not None


@_store_errors
async def calendars_by_name(
    pool: asyncpg.Pool, user_id: str, names: list[str]
) -> dict[str, dict[str, Any]]:
    """The rules of those of the tenant's calendars named, by name."""
    rows = await pool.fetch(QUERIES["calendars_by_name"], user_id, names)
    return {r["name"]: r["exclude"] for r in rows}

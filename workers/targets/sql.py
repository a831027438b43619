"""The ``sql`` target: one statement, with parameters, on a connection the operator named.

A job names a connection (``TargetSettings.sql_connections``); its DSN never travels in a job.
Each name gets a small pool, created on first use, so a worker that never runs SQL jobs opens
no connection and a down reporting database costs only the jobs that use it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
from pydantic import SecretStr

from core.db import is_unavailable
from schemas.v1.targets import SqlTarget
from workers.targets.base import Attempt, Outcome
from workers.targets.sql_results import ResultExcerpt, rows_affected

log = logging.getLogger(__name__)

POOL_MAX = 4
# Rows are fetched in slices of this many until the excerpt is full, then skipped server-side.
FETCH_SLICE = 50
# MOVE's count is a 32-bit integer.
MOVE_SLICE = 2**31 - 1
# The client gives the server this much past its own statement_timeout before cutting off,
# so a slow statement ends with Postgres's clear error rather than a dropped connection.
CLIENT_MARGIN_S = 1.0

# SQLSTATE classes and codes of failures that may pass on their own: connection trouble (08),
# too many connections / out of memory (53), operator intervention (57, incl. statement
# timeout 57014), and the transaction conflicts (serialization failure, deadlock).
_TRANSIENT_CLASSES = ("08", "53", "57")
_TRANSIENT_CODES = frozenset({"40001", "40P01"})


def is_transient(exc: BaseException) -> bool:
    if is_unavailable(exc) or isinstance(exc, TimeoutError):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state in _TRANSIENT_CODES or state.startswith(_TRANSIENT_CLASSES)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON parameters and columns as Python values, as in kjs's own store.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class SqlPools:
    """One lazily created pool per connection name; closed with the worker."""

    def __init__(self, connections: Mapping[str, SecretStr], max_size: int = POOL_MAX) -> None:
        self._connections = dict(connections)
        self._max_size = max_size
        self._pools: dict[str, asyncpg.Pool] = {}
        self._lock = asyncio.Lock()

    def knows(self, name: str) -> bool:
        return name in self._connections

    async def get(self, name: str) -> asyncpg.Pool:
        async with self._lock:
            pool = self._pools.get(name)
            if pool is None:
                pool = await asyncpg.create_pool(
                    self._connections[name].get_secret_value(),
                    min_size=0,
                    max_size=self._max_size,
                    init=_init_connection,
                )
                assert pool is not None
                self._pools[name] = pool
            return pool

    async def close(self) -> None:
        async with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()


class SqlRunner:
    def __init__(self, pools: SqlPools, excerpt_bytes: int) -> None:
        self._pools = pools
        self._excerpt_bytes = excerpt_bytes

    async def __call__(self, target: SqlTarget, attempt: Attempt) -> Outcome:
        if not self._pools.knows(target.connection):
            return Outcome.failure(
                f"no SQL connection named {target.connection!r} is configured", retryable=False
            )
        try:
            async with asyncio.timeout(target.timeout_s + CLIENT_MARGIN_S):
                pool = await self._pools.get(target.connection)
                async with pool.acquire() as conn:
                    text = await self._run(conn, target)
        except TimeoutError:
            return Outcome.failure(f"timed out after {target.timeout_s:g} s", retryable=True)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            if getattr(exc, "sqlstate", None) == "57014":
                error = f"timed out after {target.timeout_s:g} s (statement_timeout)"
            else:
                error = f"{type(exc).__name__}: {exc}"
            return Outcome.failure(error, retryable=is_transient(exc))
        return Outcome(succeeded=True, output_excerpt=text)

    async def _run(self, conn: asyncpg.Connection, target: SqlTarget) -> str:
        """Run the statement and describe it; the result as JSON text.

        1. ``SET statement_timeout``, so the server stops the statement at its timeout
           (the pool's ``RESET ALL`` on release undoes it for the next user).
        2. A statement that returns no rows runs as it is (autocommit, so ``VACUUM`` and
           the like work); its status string gives the rows affected.
        3. One that returns rows runs through a cursor in a transaction: rows are fetched in
           slices until the excerpt is full, the rest are only counted (``MOVE``) on the
           server, so a large result costs no worker memory.
        """
        await conn.execute(f"SET statement_timeout = {int(target.timeout_s * 1000)}")
        statement = await conn.prepare(target.statement)
        excerpt = ResultExcerpt(self._excerpt_bytes)
        if not statement.get_attributes():
            await statement.fetch(*target.params)
            status = statement.get_statusmsg()
            return excerpt.render(status, rows_affected(status))
        async with conn.transaction():
            cursor = await statement.cursor(*target.params)
            while not excerpt.full:
                rows: list[Any] = await cursor.fetch(FETCH_SLICE)
                excerpt.add_rows(rows)
                if len(rows) < FETCH_SLICE:
                    break
            else:
                while (moved := await cursor.forward(MOVE_SLICE)) > 0:
                    excerpt.skip(moved)
        # asyncpg keeps no status for a cursor; the count of rows returned is the answer.
        return excerpt.render(None, excerpt.row_count)

"""The Postgres boundary: pools, migrations, and driver errors turned into domain errors."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import asyncpg

from core.queries import QUERIES
from core.settings import DatabaseSettings

# Where the applied migrations are recorded (created by the runner, in queries.sql).
MIGRATIONS_TABLE = "kjs_schema_migrations"


class StoreUnavailable(RuntimeError):
    """Postgres could not be reached or dropped the connection; the caller retries later."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb columns come back as Python objects, not strings.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    settings: DatabaseSettings, dsn: str | None = None, *, custom_plans: bool = False
) -> asyncpg.Pool:
    """A pool of ``settings`` (or ``dsn``). ``custom_plans``: every statement is planned for
    the values it is run with, never with a cached generic plan; the API's listings take
    optional filters (``$4 IS NULL OR ...``), and only a plan that knows which are given uses
    the index of the one that is."""
    try:
        pool = await asyncpg.create_pool(
            dsn or settings.database_url.get_secret_value(),
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            init=_init_connection,
            reset=_reset_connection,
            server_settings={"plan_cache_mode": "force_custom_plan"} if custom_plans else None,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(f"cannot connect to Postgres: {exc}") from exc
    assert pool is not None
    return pool


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool: only a rollback of a
    transaction left open. asyncpg's default reset (advisory unlock, CLOSE ALL, UNLISTEN,
    RESET ALL) is a round trip on every release, and kjs's own connections keep no session
    state (the migration lock is transaction-level; user SQL targets have pools of their own)."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def is_unavailable(exc: BaseException) -> bool:
    """Whether an error means "Postgres is down or restarting" rather than "bad query"."""
    return isinstance(
        exc,
        OSError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.InterfaceError
        | StoreUnavailable,
    )


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every numbered migration, in order."""
    folder = resources.files("schemas") / "sql" / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


def schema_file() -> str:
    return (resources.files("schemas") / "sql" / "schema.sql").read_text()


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet applied; returns their names.

    1. Take a transaction-level advisory lock, so that processes starting together do not
       apply the same migration twice.
    2. Read the applied versions, apply each missing one in order, and record it, all in
       the same transaction: a failing migration leaves nothing half-applied.
    """
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute(QUERIES["lock_migrations"])
        await conn.execute(QUERIES["create_migrations_table"])
        done = {r["version"] for r in await conn.fetch(QUERIES["applied_migrations"])}
        for version, name, sql in migration_files():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute(QUERIES["record_migration"], version, name)
            applied_now.append(name)
    return applied_now


async def migrate_url(dsn: str) -> list[str]:
    conn: Any = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()

"""Shared fixtures. Tests that touch Kafka or Postgres use the real services.

The services are started by the project's own ``infra`` code when they are not running, never
skipped and never mocked. Each test session gets its own database and its own topic namespace,
so a run never sees another run's rows or records.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.db import create_pool, migrate_url
from core.settings import DatabaseSettings, InfraSettings, KafkaSettings
from topics.admin import create_topics
from topics.catalog import Catalog, catalog

RUN_ID = uuid.uuid4().hex[:10]


def _admin_dsn() -> str:
    return os.environ.get("KJS_DATABASE_URL", DatabaseSettings().database_url.get_secret_value())


@pytest.fixture(scope="session")
async def services() -> None:
    """Make sure the broker and Postgres run (idempotent; reuses running ones)."""
    from infra.supervisor import up

    if "KJS_DATABASE_URL" in os.environ and "KJS_KAFKA_BOOTSTRAP" in os.environ:
        return  # pointed at existing services on purpose
    await up(InfraSettings())


@contextlib.asynccontextmanager
async def fresh_database(name: str) -> AsyncIterator[str]:
    """A new, migrated database on the test Postgres (its DSN), dropped afterwards."""
    admin = _admin_dsn()
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = admin.rsplit("/", 1)[0] + "/" + name
    try:
        await migrate_url(dsn)
        yield dsn
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
async def database_url(services: None) -> AsyncIterator[str]:
    async with fresh_database(f"kjs_test_{RUN_ID}") as dsn:
        yield dsn


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(DatabaseSettings(), dsn=database_url)
    yield p
    await p.close()


@pytest.fixture(scope="session")
def kafka_settings() -> KafkaSettings:
    return KafkaSettings(namespace=f"t{RUN_ID}.", command_partitions=3, due_partitions=3)


@pytest.fixture(scope="session")
async def topic_catalog(services: None, kafka_settings: KafkaSettings) -> Catalog:
    cat = catalog(kafka_settings)
    await create_topics(kafka_settings, cat)
    return cat


@pytest.fixture
def user_id() -> str:
    """A fresh tenant per test, so tests sharing the session's stack do not see each other."""
    return f"u-{uuid.uuid4().hex[:12]}"


async def make_api_key(
    pool: asyncpg.Pool, user_id: str, scopes: tuple[str, ...] = ("read", "write")
) -> str:
    """A key for ``user_id``, created the way ``kjs keys create`` creates one."""
    from api.keys import create_key

    _, key = await create_key(pool, user_id, scopes, name="test")
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def auth_headers(pool: asyncpg.Pool, user_id: str) -> dict[str, str]:
    """Authorization for the test's tenant (read and write)."""
    return bearer(await make_api_key(pool, user_id))

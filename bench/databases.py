"""A fresh, migrated database on the benchmarks' Postgres, for one run."""

from __future__ import annotations

import uuid

import asyncpg

from core.db import migrate_url
from core.settings import DatabaseSettings


async def fresh_database(tag: str) -> str:
    """Create and migrate ``kjs_bench_<tag>_<random>``; returns its DSN."""
    admin = DatabaseSettings().database_url.get_secret_value()
    name = f"kjs_bench_{tag}_{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    dsn = admin.rsplit("/", 1)[0] + "/" + name
    await migrate_url(dsn)
    return dsn

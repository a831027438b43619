"""A database built from the numbered migrations equals one built from schema.sql."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from core.db import MIGRATIONS_TABLE, migrate, migration_files, schema_file

pytestmark = pytest.mark.services

CATALOG = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public'
        ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' ORDER BY 1, 2""",
}


async def _describe(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            name: [tuple(r) for r in await conn.fetch(sql) if MIGRATIONS_TABLE not in str(r[0])]
            for name, sql in CATALOG.items()
        }
    finally:
        await conn.close()


async def test_migrations_from_empty_equal_the_schema_file(database_url: str) -> None:
    base = database_url.rsplit("/", 1)[0]
    names = [f"kjs_mig_{uuid.uuid4().hex[:8]}", f"kjs_sch_{uuid.uuid4().hex[:8]}"]
    admin = await asyncpg.connect(database_url)
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
        migrated = await asyncpg.connect(f"{base}/{names[0]}")
        try:
            assert await migrate(migrated) == [name for _, name, _ in migration_files()]
            assert await migrate(migrated) == [], "a second migrate must be a no-op"
        finally:
            await migrated.close()
        from_schema = await asyncpg.connect(f"{base}/{names[1]}")
        try:
            await from_schema.execute(schema_file())
        finally:
            await from_schema.close()
        a, b = await _describe(f"{base}/{names[0]}"), await _describe(f"{base}/{names[1]}")
        assert a["columns"], "the migrated database has no tables"
        assert a == b
    finally:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

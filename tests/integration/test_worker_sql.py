"""The sql runner against the real Postgres, through a named connection to the test database."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from schemas.v1.targets import SqlTarget
from workers.targets.base import Attempt, Outcome
from workers.targets.sql import SqlPools, SqlRunner

pytestmark = pytest.mark.services

ATTEMPT = Attempt(execution_id=uuid.uuid4(), job_id=uuid.uuid4(), user_id="u-1", attempt=1)
EXCERPT_BYTES = 256


@pytest.fixture
async def runner(database_url: str) -> AsyncIterator[SqlRunner]:
    # Port 1 on loopback: nothing listens there, so connecting is refused at once.
    down = "postgresql://kjs@127.0.0.1:1/none"
    pools = SqlPools({"reporting": SecretStr(database_url), "down": SecretStr(down)})
    yield SqlRunner(pools, EXCERPT_BYTES)
    await pools.close()


@pytest.fixture
async def table(pool: asyncpg.Pool) -> AsyncIterator[str]:
    name = f"t_sql_{uuid.uuid4().hex[:10]}"
    await pool.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, note text)")
    await pool.execute(f"INSERT INTO {name} SELECT n, 'row ' || n FROM generate_series(1, 5) n")
    yield name
    await pool.execute(f"DROP TABLE IF EXISTS {name}")


def sql(statement: str, *params: Any, connection: str = "reporting", **fields: Any) -> SqlTarget:
    return SqlTarget(
        type="sql", connection=connection, statement=statement, params=list(params), **fields
    )


def result(outcome: Outcome) -> dict[str, Any]:
    assert outcome.succeeded, outcome
    assert outcome.output_excerpt is not None
    body: dict[str, Any] = json.loads(outcome.output_excerpt)
    return body


async def test_a_statement_runs_with_its_parameters_and_records_rows_affected(
    runner: SqlRunner, pool: asyncpg.Pool, table: str
) -> None:
    outcome = await runner(sql(f"UPDATE {table} SET note = $1 WHERE id <= $2", "seen", 3), ATTEMPT)

    assert result(outcome) == {
        "status": "UPDATE 3",
        "rows_affected": 3,
        "rows": [],
        "rows_truncated": False,
    }
    assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE note = 'seen'") == 3


async def test_returned_rows_are_excerpted_within_the_bound_and_all_counted(
    runner: SqlRunner,
) -> None:
    statement = "SELECT n AS id, repeat('x', 20) AS pad FROM generate_series(1, $1::int) n"
    body = result(await runner(sql(statement, 100_000), ATTEMPT))

    assert body["rows_affected"] == 100_000
    assert body["rows_truncated"] is True
    assert body["rows"][:2] == [{"id": 1, "pad": "x" * 20}, {"id": 2, "pad": "x" * 20}]
    assert len(json.dumps(body["rows"], separators=(",", ":")).encode()) <= EXCERPT_BYTES


async def test_rows_returned_by_a_write_are_its_rows_affected(
    runner: SqlRunner, pool: asyncpg.Pool, table: str
) -> None:
    statement = f"DELETE FROM {table} WHERE id > $1 RETURNING id"
    body = result(await runner(sql(statement, 3), ATTEMPT))

    assert (body["rows_affected"], body["rows"]) == (2, [{"id": 4}, {"id": 5}])
    assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 3


async def test_statements_that_refuse_a_transaction_block_run(
    runner: SqlRunner, table: str
) -> None:
    body = result(await runner(sql(f"VACUUM {table}"), ATTEMPT))
    assert (body["status"], body["rows_affected"]) == ("VACUUM", None)


async def test_an_unknown_connection_is_refused_not_retried(runner: SqlRunner) -> None:
    outcome = await runner(sql("SELECT 1", connection="billing"), ATTEMPT)
    assert (outcome.succeeded, outcome.retryable) == (False, False)
    assert outcome.error == "no SQL connection named 'billing' is configured"


async def test_a_statement_past_its_timeout_is_stopped_and_retryable(runner: SqlRunner) -> None:
    outcome = await runner(sql("SELECT pg_sleep(30)", timeout_s=0.3), ATTEMPT)
    assert (outcome.succeeded, outcome.retryable) == (False, True)
    assert outcome.error is not None and outcome.error.startswith("timed out after 0.3 s")


async def test_a_bad_statement_fails_for_good(runner: SqlRunner) -> None:
    outcome = await runner(sql("SELEKT 1"), ATTEMPT)
    assert (outcome.succeeded, outcome.retryable) == (False, False)
    assert outcome.error is not None and "syntax error" in outcome.error


async def test_an_unreachable_database_is_retryable(runner: SqlRunner) -> None:
    outcome = await runner(sql("SELECT 1", connection="down"), ATTEMPT)
    assert (outcome.succeeded, outcome.retryable) == (False, True)

"""``GET /v1/executions/{execution_id}`` against real rows: every stored column, or 404."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import build_app
from api.deps import ApiDeps
from api.models import ExecutionDetail
from api.publisher import CommandPublisher
from tests.conftest import bearer, make_api_key
from topics.catalog import Catalog

pytestmark = pytest.mark.services

Client = TestClient[web.Request, web.Application]
T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


async def open_client(
    pool: asyncpg.Pool, publisher: CommandPublisher, cat: Catalog, headers: dict[str, str]
) -> Client:
    deps = ApiDeps(pool, publisher, cat, timedelta(seconds=60))
    client = TestClient(TestServer(build_app(deps)), headers=headers)
    await client.start_server()
    return client


@pytest.fixture
async def client(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    topic_catalog: Catalog,
    auth_headers: dict[str, str],
) -> AsyncIterator[Client]:
    c = await open_client(pool, publisher, topic_catalog, auth_headers)
    yield c
    await c.close()


async def stored_execution(pool: asyncpg.Pool, user_id: str) -> uuid.UUID:
    """A failed first attempt with everything a worker and the shard record about it."""
    job_id, execution_id = uuid.uuid4(), uuid.uuid4()
    await pool.execute(
        """INSERT INTO kjs_jobs (job_id, user_id, shard, name, schedule, target, priority, retry,
                                 status, source, created_at)
           VALUES ($1, $2, 2, 'sync', $3, $4, 'normal', $5, 'failed', 'test', $6)""",
        job_id,
        user_id,
        {"type": "once", "at": T0.isoformat()},
        {"type": "script", "command": ["sh", "-c", "exit 3"]},
        {"max_attempts": 1},
        T0,
    )
    await pool.execute(
        """INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                                       attempt, lane, status, dispatched_at, started_at,
                                       finished_at, worker, lease_until, http_status,
                                       output_excerpt, error, created_at, due_at)
           VALUES ($1, $2, $3, 2, $4::timestamptz, 1, 'normal', 'failed', $4,
                   $4 + interval '5 ms', $4 + interval '2 s', 'host-7', $4 + interval '30 s',
                   NULL, $5, $6, $4, NULL)""",
        execution_id,
        job_id,
        user_id,
        T0,
        '{"exit_code": 3, "stdout": "", "stdout_bytes": 0, "stderr": "boom", "stderr_bytes": 4}',
        "exit code 3",
    )
    return execution_id


async def test_an_execution_shows_its_full_stored_log(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    execution_id = await stored_execution(pool, user_id)

    resp = await client.get(f"/v1/executions/{execution_id}")

    assert resp.status == 200
    body = await resp.json()
    ExecutionDetail.model_validate(body)
    job_id = body.pop("job_id")
    assert uuid.UUID(job_id)
    assert body == {
        "execution_id": str(execution_id),
        "user_id": user_id,
        "shard": 2,
        "scheduled_for": "2025-05-01T08:00:00Z",
        "attempt": 1,
        "lane": "normal",
        "status": "failed",
        "created_at": "2025-05-01T08:00:00Z",
        "dispatched_at": "2025-05-01T08:00:00Z",
        "due_at": None,
        "started_at": "2025-05-01T08:00:00.005000Z",
        "finished_at": "2025-05-01T08:00:02Z",
        "worker": "host-7",
        "lease_until": "2025-05-01T08:00:30Z",
        "backfill": False,
        "http_status": None,
        "output_excerpt": (
            '{"exit_code": 3, "stdout": "", "stdout_bytes": 0, "stderr": "boom", "stderr_bytes": 4}'
        ),
        "error": "exit code 3",
    }


@pytest.mark.parametrize("execution_id", [str(uuid.uuid4()), "not-a-uuid"])
async def test_an_unknown_execution_is_404(client: Client, execution_id: str) -> None:
    resp = await client.get(f"/v1/executions/{execution_id}")
    assert resp.status == 404
    assert await resp.json() == {"error": "execution not found"}


async def test_another_tenants_execution_is_404(
    pool: asyncpg.Pool, publisher: CommandPublisher, topic_catalog: Catalog, user_id: str
) -> None:
    execution_id = await stored_execution(pool, user_id)

    someone_else = bearer(await make_api_key(pool, f"{user_id}-else"))
    client = await open_client(pool, publisher, topic_catalog, someone_else)
    try:
        resp = await client.get(f"/v1/executions/{execution_id}")
        assert resp.status == 404
        assert await resp.json() == {"error": "execution not found"}
    finally:
        await client.close()


async def test_the_route_is_documented(client: Client) -> None:
    spec = await (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/executions/{execution_id}"]["get"]
    assert operation["parameters"][0]["schema"] == {"type": "string", "format": "uuid"}
    assert set(operation["responses"]) == {"200", "401", "403", "404", "503"}

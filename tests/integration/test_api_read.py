"""The read endpoints against real Postgres rows: job, executions, listing with pagination."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import build_app
from api.deps import ApiDeps
from api.keys import new_key
from api.models import ExecutionPage, JobPage, JobView
from api.publisher import CommandPublisher
from tests.conftest import bearer
from topics.catalog import Catalog

pytestmark = pytest.mark.services

Client = TestClient[web.Request, web.Application]
T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
async def client(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    topic_catalog: Catalog,
    auth_headers: dict[str, str],
) -> AsyncIterator[Client]:
    deps = ApiDeps(pool, publisher, topic_catalog, timedelta(seconds=60))
    async with TestClient(TestServer(build_app(deps)), headers=auth_headers) as c:
        yield c


async def insert_job(
    pool: asyncpg.Pool,
    user_id: str,
    *,
    status: str = "scheduled",
    created_at: datetime = T0,
    job_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
) -> uuid.UUID:
    job_id = job_id or uuid.uuid4()
    await pool.execute(
        """INSERT INTO kjs_jobs (job_id, user_id, shard, name, idempotency_key, schedule, target,
                                 priority, retry, status, next_run_at, run_count, source,
                                 created_at, updated_at)
           VALUES ($1, $2, 0, 'nightly report', $3, $4, $5, 'critical', $6, $7, $8, 2, 'test',
                   $9, $9)""",
        job_id,
        user_id,
        idempotency_key,
        {"type": "cron", "expression": "0 3 * * *", "timezone": "Europe/Berlin"},
        {"type": "http", "method": "POST", "url": "http://example.test/hook", "timeout_s": 5},
        {"max_attempts": 4, "initial_delay_s": 2.0, "max_delay_s": 60.0},
        status,
        created_at + timedelta(days=1) if status == "scheduled" else None,
        created_at,
    )
    return job_id


async def insert_execution(
    pool: asyncpg.Pool,
    job_id: uuid.UUID,
    user_id: str,
    *,
    attempt: int,
    status: str,
    created_at: datetime,
) -> uuid.UUID:
    execution_id = uuid.uuid4()
    started = status != "queued" and status != "cancelled"
    finished = status in ("succeeded", "failed", "cancelled")
    await pool.execute(
        """INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                                       attempt, lane, status, dispatched_at, started_at,
                                       finished_at, worker, http_status, output_excerpt, error,
                                       created_at)
           VALUES ($1, $2, $3, 0, $4, $5, 'critical', $6, $4, $7, $8, $9, $10, $11, $12, $13)""",
        execution_id,
        job_id,
        user_id,
        created_at,
        attempt,
        status,
        created_at + timedelta(milliseconds=5) if started else None,
        created_at + timedelta(seconds=1) if finished else None,
        "worker-1" if started else None,
        500 if status == "failed" else (200 if status == "succeeded" else None),
        "ok" if status == "succeeded" else None,
        "HTTP 500" if status == "failed" else None,
        created_at,
    )
    return execution_id


async def test_a_job_shows_its_spec_and_latest_execution(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await insert_job(pool, user_id, status="queued", idempotency_key="nightly")
    await insert_execution(pool, job_id, user_id, attempt=1, status="failed", created_at=T0)
    latest = await insert_execution(
        pool, job_id, user_id, attempt=2, status="running", created_at=T0 + timedelta(minutes=1)
    )

    resp = await client.get(f"/v1/jobs/{job_id}")

    assert resp.status == 200
    body = await resp.json()
    JobView.model_validate(body)
    assert body["job_id"] == str(job_id)
    assert body["user_id"] == user_id
    assert body["name"] == "nightly report"
    assert body["status"] == "running"  # queued, and its latest attempt runs
    assert body["next_run_at"] is None
    assert body["run_count"] == 2
    assert body["created_at"] == "2025-05-01T08:00:00Z"
    # The stored spec, with the contract's defaults for what it left out (schedule policies).
    assert (
        body["schedule"]
        | {
            "type": "cron",
            "expression": "0 3 * * *",
            "timezone": "Europe/Berlin",
        }
        == body["schedule"]
    )
    assert body["target"]["url"] == "http://example.test/hook"
    assert body["priority"] == "critical"
    assert body["retry"] == {"max_attempts": 4, "initial_delay_s": 2.0, "max_delay_s": 60.0}
    assert body["idempotency_key"] == "nightly"
    last = body["last_execution"]
    assert last["execution_id"] == str(latest)
    assert last["attempt"] == 2
    assert last["status"] == "running"
    assert last["worker"] == "worker-1"
    assert last["started_at"] == "2025-05-01T08:01:00.005000Z"
    assert last["finished_at"] is None


async def test_a_queued_job_whose_attempt_failed_shows_queued(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await insert_job(pool, user_id, status="queued")
    await insert_execution(pool, job_id, user_id, attempt=1, status="failed", created_at=T0)
    body = await (await client.get(f"/v1/jobs/{job_id}")).json()
    assert body["status"] == "queued"
    assert body["last_execution"]["status"] == "failed"
    assert body["last_execution"]["error"] == "HTTP 500"


async def test_a_job_never_run_has_no_last_execution(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await insert_job(pool, user_id)
    body = await (await client.get(f"/v1/jobs/{job_id}")).json()
    assert body["status"] == "scheduled"
    assert body["next_run_at"] == "2025-05-02T08:00:00Z"
    assert body["last_execution"] is None


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid"])
async def test_an_unknown_job_is_404(client: Client, job_id: str) -> None:
    for method in ("GET", "DELETE"):
        resp = await client.request(method, f"/v1/jobs/{job_id}")
        assert resp.status == 404, method
        assert await resp.json() == {"error": "job not found"}
    resp = await client.get(f"/v1/jobs/{job_id}/executions")
    assert resp.status == 404
    assert await resp.json() == {"error": "job not found"}


async def test_executions_are_listed_newest_first_across_pages(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await insert_job(pool, user_id, status="failed")
    ids = [
        await insert_execution(
            pool, job_id, user_id, attempt=n, status="failed", created_at=T0 + timedelta(seconds=n)
        )
        for n in (1, 2, 3)
    ]

    first = await client.get(f"/v1/jobs/{job_id}/executions", params={"limit": "2"})
    assert first.status == 200
    page1 = await first.json()
    ExecutionPage.model_validate(page1)
    assert [e["execution_id"] for e in page1["executions"]] == [str(ids[2]), str(ids[1])]
    assert page1["next_cursor"] is not None
    shown = page1["executions"][0]
    assert shown == {
        "execution_id": str(ids[2]),
        "scheduled_for": "2025-05-01T08:00:03Z",
        "attempt": 3,
        "lane": "critical",
        "status": "failed",
        "dispatched_at": "2025-05-01T08:00:03Z",
        "started_at": "2025-05-01T08:00:03.005000Z",
        "finished_at": "2025-05-01T08:00:04Z",
        "worker": "worker-1",
        "http_status": 500,
        "output_excerpt": None,
        "error": "HTTP 500",
    }

    second = await client.get(
        f"/v1/jobs/{job_id}/executions", params={"limit": "2", "cursor": page1["next_cursor"]}
    )
    page2 = await second.json()
    assert [e["execution_id"] for e in page2["executions"]] == [str(ids[0])]
    assert page2["next_cursor"] is None


async def _all_pages(client: Client, params: dict[str, str]) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = await client.get("/v1/jobs", params=query)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        JobPage.model_validate(body)
        pages.append([job["job_id"] for job in body["jobs"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "pagination does not terminate"


async def test_listing_pages_through_every_job_once_newest_first(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    # Three jobs share a created_at (one transaction), across a page boundary: only the
    # job_id tie-break keeps the second page from skipping or repeating one of them.
    tie = T0 + timedelta(seconds=1)
    times = [T0, tie, tie, tie, T0 + timedelta(seconds=2)]
    created = [(t, await insert_job(pool, user_id, created_at=t)) for t in times]
    await insert_job(pool, f"{user_id}-other")
    expected = [str(j) for _, j in sorted(created, key=lambda c: (c[0], c[1]), reverse=True)]

    pages = await _all_pages(client, {"user_id": user_id, "limit": "2"})

    assert [len(p) for p in pages] == [2, 2, 1]
    assert [j for page in pages for j in page] == expected


async def test_listing_filters_by_the_shown_status(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    running = await insert_job(pool, user_id, status="queued")
    await insert_execution(pool, running, user_id, attempt=1, status="running", created_at=T0)
    waiting = await insert_job(pool, user_id, status="queued", created_at=T0 + timedelta(1))
    done = await insert_job(pool, user_id, status="succeeded", created_at=T0 + timedelta(2))

    async def listed(status: str) -> list[list[str]]:
        return await _all_pages(client, {"user_id": user_id, "status": status})

    assert await listed("running") == [[str(running)]]
    assert await listed("queued") == [[str(waiting)]]
    assert await listed("succeeded") == [[str(done)]]
    assert await listed("cancelled") == [[]]


async def test_an_empty_listing_has_no_next_cursor(client: Client, user_id: str) -> None:
    resp = await client.get("/v1/jobs", params={"user_id": user_id})
    assert await resp.json() == {"jobs": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"user_id": "not a tenant!"}, "user_id"),
        ({"user_id": "u", "limit": "0"}, "limit"),
        ({"user_id": "u", "limit": "501"}, "limit"),
        ({"user_id": "u", "limit": "ten"}, "limit"),
        ({"user_id": "u", "status": "completed"}, "status"),
        ({"user_id": "u", "cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
        ({"user_id": "u", "sort": "asc"}, "sort"),
    ],
)
async def test_a_bad_listing_query_names_the_parameter(
    client: Client, params: dict[str, str], field: str
) -> None:
    resp = await client.get("/v1/jobs", params=params)
    assert resp.status == 422
    body: dict[str, Any] = await resp.json()
    assert field in [e["field"] for e in body["errors"]]


async def test_store_down_answers_503_with_retry_after(
    publisher: CommandPublisher, topic_catalog: Catalog
) -> None:
    dead = await asyncpg.create_pool("postgresql://kjs@127.0.0.1:1/kjs", min_size=0)
    try:
        deps = ApiDeps(dead, publisher, topic_catalog, timedelta(seconds=60))
        # A well-formed key that cannot be checked while Postgres is down: 503, not 401.
        async with TestClient(TestServer(build_app(deps)), headers=bearer(new_key())) as c:
            resp = await c.get(f"/v1/jobs/{uuid.uuid4()}")
            assert resp.status == 503
            assert resp.headers["Retry-After"].isdigit()
            assert "error" in await resp.json()
    finally:
        await dead.close()

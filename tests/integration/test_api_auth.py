"""Authentication, scopes and tenant isolation on every /v1/ route (invariant 6).

Every route is tried without a key, with a malformed, unknown or revoked one, with the wrong
scope, and across tenants: another tenant's job or execution is 404 (its existence is not
revealed), a body or query naming another tenant is 403. The keys are made by the same code as
``kjs keys create``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import build_app
from api.deps import ApiDeps
from api.keys import create_key, new_key, revoke_key
from api.publisher import CommandPublisher
from api.routes import ROUTES
from core.settings import KafkaSettings, QuotaLimits, SecuritySettings
from tests.conftest import bearer, make_api_key
from tests.integration.test_api_submit import commands_for, job_body
from tests.support.api import api_deps
from topics.catalog import Catalog

pytestmark = pytest.mark.services

Client = TestClient[web.Request, web.Application]

V1_ROUTES = [(r.method, r.path) for r in ROUTES if r.path.startswith("/v1/")]
# The routes that act on one stored job or execution, found by its id in the path.
BY_ID = [(m, p) for m, p in V1_ROUTES if "{" in p]
# The routes that name a tenant in the body or the query.
BY_TENANT = [
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/calendars"),
    ("GET", "/v1/calendars"),
]
# The routes that touch no tenant's data: any valid key with the read scope may call them.
TENANT_FREE = [("POST", "/v1/schedules/preview")]
READ_ONLY = {("POST", "/v1/schedules/preview")}


def calendar_name(job_id: uuid.UUID) -> str:
    """The name of the calendar ``stored`` gives the tenant of ``job_id``."""
    return f"cal-{job_id.hex[:12]}"


async def stored(pool: asyncpg.Pool, user_id: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A scheduled job of ``user_id`` with one finished execution, and a calendar."""
    job_id, execution_id = uuid.uuid4(), uuid.uuid4()
    await pool.execute(
        """INSERT INTO kjs_jobs (job_id, user_id, shard, name, schedule, target, priority, retry,
                                 status, next_run_at, source)
           VALUES ($1, $2, 0, 'j', $3, $4, 'normal', $5, 'scheduled',
                   now() + interval '1 hour', 'test')""",
        job_id,
        user_id,
        {"type": "interval", "every_seconds": 3600},
        {"type": "kafka", "topic": "out"},
        {"max_attempts": 1},
    )
    await pool.execute(
        """INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                                       attempt, lane, status, started_at, finished_at, worker)
           VALUES ($1, $2, $3, 0, now(), 1, 'normal', 'succeeded', now(), now(), 'w')""",
        execution_id,
        job_id,
        user_id,
    )
    await pool.execute(
        "INSERT INTO kjs_calendars (user_id, name, exclude) VALUES ($1, $2, $3)",
        user_id,
        calendar_name(job_id),
        {"cron": ["* * * * 0,6"]},
    )
    return job_id, execution_id


def same_answer(known: Any, job_id: uuid.UUID, other: Any, other_id: uuid.UUID) -> bool:
    """Two 404 bodies alike but for the calendar name each asked for (a job's or an
    execution's 404 does not name its id)."""
    return str(known).replace(calendar_name(job_id), "?") == str(other).replace(
        calendar_name(other_id), "?"
    )


def request_for(
    method: str, path: str, user_id: str, job_id: uuid.UUID, execution_id: uuid.UUID
) -> dict[str, Any]:
    url = path.format(job_id=job_id, execution_id=execution_id, name=calendar_name(job_id))
    kwargs: dict[str, Any] = {}
    if path == "/v1/jobs":
        if method == "POST":
            kwargs["json"] = job_body(user_id)
        else:
            kwargs["params"] = {"user_id": user_id}
    elif path == "/v1/calendars":
        if method == "POST":
            name = f"c-{uuid.uuid4().hex[:12]}"
            kwargs["json"] = {"user_id": user_id, "name": name, "cron": ["* * * * 0,6"]}
        else:
            kwargs["params"] = {"user_id": user_id}
    elif path.endswith("/backfill"):
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        past = {"from": now - timedelta(hours=3), "to": now - timedelta(hours=1)}
        kwargs["json"] = {k: v.isoformat() for k, v in past.items()}
    elif path == "/v1/schedules/preview":
        kwargs["json"] = {
            "schedule": {"type": "interval", "every_seconds": 60},
            "from": "2026-01-01T00:00:00Z",
            "count": 2,
        }
    elif method == "PATCH":
        kwargs["json"] = {"priority": "low"}
    return {"method": method, "path": url, **kwargs}


def test_every_v1_route_is_covered() -> None:
    covered = {*BY_ID, *BY_TENANT, *TENANT_FREE}
    assert covered == set(V1_ROUTES), "a new /v1/ route needs its place in these tests"
    assert len(V1_ROUTES) >= 10


@pytest.mark.parametrize(("method", "path"), V1_ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer not-a-key", "Basic a2pzOmtqcw==", "__unknown__", "__revoked__"],
)
async def test_every_route_refuses_a_missing_bad_or_revoked_key(
    client: Client,
    pool: asyncpg.Pool,
    user_id: str,
    method: str,
    path: str,
    authorization: str | None,
) -> None:
    job_id, execution_id = await stored(pool, user_id)
    headers: dict[str, str] = {}
    if authorization == "__unknown__":
        headers = bearer(new_key())
    elif authorization == "__revoked__":
        key_id, key = await create_key(pool, user_id, ["admin"])
        assert await revoke_key(pool, key_id)
        headers = bearer(key)
    elif authorization is not None:
        headers = {"Authorization": authorization}

    resp = await client.request(
        **request_for(method, path, user_id, job_id, execution_id), headers=headers
    )

    assert resp.status == 401, await resp.text()
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error" in await resp.json()


@pytest.mark.parametrize(("method", "path"), BY_ID)
async def test_another_tenants_job_or_execution_is_404_on_every_route(
    client: Client,
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
    method: str,
    path: str,
) -> None:
    job_id, execution_id = await stored(pool, user_id)
    intruder = bearer(await make_api_key(pool, f"{user_id}-x", ("admin",)))

    resp = await client.request(
        **request_for(method, path, user_id, job_id, execution_id), headers=intruder
    )
    unknown_id = uuid.uuid4()
    unknown = await client.request(
        **request_for(method, path, user_id, unknown_id, uuid.uuid4()), headers=intruder
    )

    assert resp.status == 404, await resp.text()
    # Indistinguishable from an id that does not exist at all (a calendar's 404 names the
    # name asked for, and only that differs).
    assert unknown.status == 404
    assert same_answer(await resp.json(), job_id, await unknown.json(), unknown_id)
    assert await commands_for(kafka_settings, topic_catalog, user_id) == []


@pytest.mark.parametrize(("method", "path"), BY_TENANT)
async def test_a_body_or_query_naming_another_tenant_is_403(
    client: Client,
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
    method: str,
    path: str,
) -> None:
    job_id, execution_id = await stored(pool, user_id)
    intruder = bearer(await make_api_key(pool, f"{user_id}-x", ("admin",)))

    resp = await client.request(
        **request_for(method, path, user_id, job_id, execution_id), headers=intruder
    )

    assert resp.status == 403, await resp.text()
    assert await resp.json() == {
        "error": f"not allowed for user_id {user_id!r}: this API key acts for the tenant "
        f"{user_id + '-x'!r}"
    }
    assert await commands_for(kafka_settings, topic_catalog, user_id) == []


@pytest.mark.parametrize(("method", "path"), V1_ROUTES)
@pytest.mark.parametrize("scopes", [("read",), ("write",), ("admin",), ("read", "write")])
async def test_scopes_read_for_get_write_for_the_rest_admin_for_both(
    client: Client,
    pool: asyncpg.Pool,
    user_id: str,
    method: str,
    path: str,
    scopes: tuple[str, ...],
) -> None:
    job_id, execution_id = await stored(pool, user_id)
    key = bearer(await make_api_key(pool, user_id, scopes))
    needed = "read" if method == "GET" or (method, path) in READ_ONLY else "write"

    resp = await client.request(
        **request_for(method, path, user_id, job_id, execution_id), headers=key
    )

    if needed in scopes or "admin" in scopes:
        assert resp.status in (200, 201, 202, 204, 409), await resp.text()
    else:
        assert resp.status == 403, await resp.text()
        assert await resp.json() == {"error": f"this API key lacks the {needed} scope"}


async def test_own_jobs_are_served_to_their_tenant(client: Client, pool: asyncpg.Pool) -> None:
    user_id = f"u-{uuid.uuid4().hex[:12]}"
    job_id, execution_id = await stored(pool, user_id)
    key = bearer(await make_api_key(pool, user_id, ("read",)))

    listed = await (await client.get("/v1/jobs", params={"user_id": user_id}, headers=key)).json()
    job = await client.get(f"/v1/jobs/{job_id}", headers=key)
    execution = await client.get(f"/v1/executions/{execution_id}", headers=key)

    assert [j["job_id"] for j in listed["jobs"]] == [str(job_id)]
    assert job.status == 200
    assert execution.status == 200


async def test_a_revoked_key_stops_working_within_the_cache_time(
    pool: asyncpg.Pool, publisher: CommandPublisher, topic_catalog: Catalog, user_id: str
) -> None:
    deps = api_deps(pool, publisher, topic_catalog, auth_cache_s=0.0)
    key_id, key = await create_key(pool, user_id, ["read"])
    async with TestClient(TestServer(build_app(deps)), headers=bearer(key)) as c:
        assert (await c.get("/v1/jobs", params={"user_id": user_id})).status == 200
        await revoke_key(pool, key_id)
        assert (await c.get("/v1/jobs", params={"user_id": user_id})).status == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
async def test_operations_endpoints_need_no_key(client: Client, path: str) -> None:
    assert (await client.get(path)).status == 200


async def test_the_spec_documents_the_bearer_scheme(client: Client) -> None:
    spec = await (await client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    for method, path in V1_ROUTES:
        operation = spec["paths"][path][method.lower()]
        assert operation["security"] == [{"apiKey": []}]
        assert {"401", "403"} <= set(operation["responses"])


async def test_auth_disabled_trusts_the_claim_and_says_so_loudly(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    topic_catalog: Catalog,
    user_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    deps = api_deps(pool, publisher, topic_catalog, auth_disabled=True)
    with caplog.at_level(logging.WARNING):
        app = build_app(deps)
    assert "AUTHENTICATION IS DISABLED" in caplog.text
    async with TestClient(TestServer(app)) as c:
        assert (await c.get("/v1/jobs", params={"user_id": user_id})).status == 200


async def test_quotas_answer_429_with_retry_after(
    pool: asyncpg.Pool, publisher: CommandPublisher, topic_catalog: Catalog, user_id: str
) -> None:
    security = SecuritySettings(
        quota_tiers={
            "tiny": QuotaLimits(active_jobs=1),
            "slow": QuotaLimits(submissions_per_s=0.01, burst=2),
        },
        quota_tenant_tiers={user_id: "slow", f"{user_id}-a": "tiny"},
    )
    deps = ApiDeps(pool, publisher, topic_catalog, timedelta(seconds=60), security=security)
    key = bearer(await make_api_key(pool, user_id))
    async with TestClient(TestServer(build_app(deps)), headers=key) as c:
        statuses = [(await c.post("/v1/jobs", json=job_body(user_id))).status for _ in range(2)]
        refused = await c.post("/v1/jobs", json=job_body(user_id))
        assert statuses == [202, 202]
        assert refused.status == 429
        assert int(refused.headers["Retry-After"]) >= 60
        assert (await refused.json())["error"].startswith("quota: more than 0.01 submissions")

        crowded = f"{user_id}-a"
        await stored(pool, crowded)  # one scheduled job: the tier's limit
        other_key = bearer(await make_api_key(pool, crowded))
        full = await c.post("/v1/jobs", json=job_body(crowded), headers=other_key)
        assert full.status == 429
        assert int(full.headers["Retry-After"]) >= 1
        assert "1 active jobs" in (await full.json())["error"]


async def test_credentials_in_a_target_are_redacted_in_responses(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = uuid.uuid4()
    secret = "Bearer s3cr3t-" + uuid.uuid4().hex
    await pool.execute(
        """INSERT INTO kjs_jobs (job_id, user_id, shard, name, schedule, target, priority, retry,
                                 status, next_run_at, source)
           VALUES ($1, $2, 0, 'j', $3, $4, 'normal', $5, 'scheduled',
                   now() + interval '1 hour', 'test')""",
        job_id,
        user_id,
        {"type": "interval", "every_seconds": 3600},
        {
            "type": "http",
            "method": "POST",
            "url": "https://hooks.example/x",
            "headers": {"Authorization": secret, "X-Api-Key": secret, "X-Trace": "t-1"},
        },
        {"max_attempts": 1},
    )
    key = bearer(await make_api_key(pool, user_id, ("read",)))

    one = await client.get(f"/v1/jobs/{job_id}", headers=key)
    listed = await client.get("/v1/jobs", params={"user_id": user_id}, headers=key)

    for resp in (one, listed):
        text = await resp.text()
        assert resp.status == 200
        assert "s3cr3t" not in text
    headers = (await one.json())["target"]["headers"]
    assert headers == {"Authorization": "[redacted]", "X-Api-Key": "[redacted]", "X-Trace": "t-1"}


@pytest.mark.parametrize("path", ["/v1//jobs", "/V1/jobs", "/no/such/route", "/v2/jobs"])
async def test_auth_is_deny_by_default_off_the_known_routes(client: Client, path: str) -> None:
    resp = await client.get(path, params={"user_id": "u"})
    assert resp.status == 401

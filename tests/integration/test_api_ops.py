"""Operational endpoints against the real services: health, readiness, metrics, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from api.app import build_app
from api.deps import ApiDeps
from api.models import ReadinessBody
from api.publisher import CommandPublisher
from api.routes import ROUTES
from core.settings import KafkaSettings
from topics.catalog import Catalog

pytestmark = pytest.mark.services

Client = TestClient[web.Request, web.Application]
GRACE = timedelta(seconds=60)
DEAD_POSTGRES = "postgresql://kjs@127.0.0.1:1/kjs"


@pytest.fixture
async def client(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    topic_catalog: Catalog,
    auth_headers: dict[str, str],
) -> AsyncIterator[Client]:
    deps = ApiDeps(pool, publisher, topic_catalog, GRACE)
    async with TestClient(TestServer(build_app(deps)), headers=auth_headers) as c:
        yield c


async def test_healthz_answers(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_ready_when_postgres_and_kafka_answer(client: Client) -> None:
    resp = await client.get("/readyz")
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"ready": True, "postgres": "ok", "kafka": "ok"}


async def test_not_ready_without_kafka_but_still_alive(
    pool: asyncpg.Pool, topic_catalog: Catalog
) -> None:
    dead = CommandPublisher(KafkaSettings(kafka_bootstrap="127.0.0.1:1"), timeout_s=1.0)
    try:
        deps = ApiDeps(pool, dead, topic_catalog, GRACE)
        async with TestClient(TestServer(build_app(deps))) as c:
            resp = await c.get("/readyz")
            assert resp.status == 503
            assert "Retry-After" in resp.headers
            body = ReadinessBody.model_validate(await resp.json())
            assert (body.ready, body.postgres, body.kafka) == (False, "ok", "unavailable")
            assert (await c.get("/healthz")).status == 200
    finally:
        await dead.close()


async def test_not_ready_without_postgres(
    publisher: CommandPublisher, topic_catalog: Catalog
) -> None:
    dead = await asyncpg.create_pool(DEAD_POSTGRES, min_size=0)
    try:
        deps = ApiDeps(dead, publisher, topic_catalog, GRACE)
        async with TestClient(TestServer(build_app(deps))) as c:
            resp = await c.get("/readyz")
            assert resp.status == 503
            body = ReadinessBody.model_validate(await resp.json())
            assert (body.ready, body.postgres, body.kafka) == (False, "unavailable", "ok")
    finally:
        await dead.close()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_requests_by_route_template_and_time_submits(
    client: Client, user_id: str
) -> None:
    body = {
        "user_id": user_id,
        "name": "m",
        "schedule": {"type": "interval", "every_seconds": 60},
        "target": {"type": "kafka", "topic": "out"},
    }
    assert (await client.post("/v1/jobs", json=body)).status == 202
    assert (await client.post("/v1/jobs", json={"user_id": user_id})).status == 422
    for _ in range(2):
        assert (await client.get("/v1/jobs/00000000-0000-0000-0000-000000000000")).status == 404
    assert (await client.get("/no/such/route")).status == 404

    resp = await client.get("/metrics")

    assert resp.status == 200
    assert resp.content_type == "text/plain"
    samples = _samples(await resp.text())

    def requests(route: str, method: str, code_class: str) -> float:
        labels = {"route": route, "method": method, "code_class": code_class}
        return samples.get(("kjs_api_requests_total", frozenset(labels.items())), 0.0)

    assert requests("/v1/jobs", "POST", "2xx") == 1
    assert requests("/v1/jobs", "POST", "4xx") == 1
    # The template, not the id: the label set stays bounded whatever ids are asked for.
    assert requests("/v1/jobs/{job_id}", "GET", "4xx") == 2
    assert requests("unmatched", "GET", "4xx") == 1
    count = ("kjs_api_submit_duration_seconds_count", frozenset({("outcome", "accepted")}))
    rejected = ("kjs_api_submit_duration_seconds_count", frozenset({("outcome", "rejected")}))
    assert samples[count] == 1
    assert samples[rejected] == 1


async def test_openapi_document_describes_every_route(client: Client) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    served = {(r.method, r.path) for r in ROUTES}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == served
    assert "JobSubmission" in doc["components"]["schemas"]


async def test_unknown_routes_and_methods_answer_json(client: Client) -> None:
    resp = await client.get("/v2/jobs")
    assert resp.status == 404
    assert await resp.json() == {"error": "not found"}
    resp = await client.put("/v1/jobs")
    assert resp.status == 405
    assert "POST" in resp.headers["Allow"]
    assert await resp.json() == {"error": "method not allowed"}

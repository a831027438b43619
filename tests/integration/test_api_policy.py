"""The operator's target policy at the API: 422 naming the field, before anything is produced."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from api.app import build_app
from api.deps import ApiDeps
from api.publisher import CommandPublisher
from core.settings import TargetSettings
from tests.conftest import bearer, make_api_key
from topics.catalog import Catalog

pytestmark = pytest.mark.services

Client = TestClient[web.Request, web.Application]
POLICY = TargetSettings(
    script_enabled=True,
    script_allowlist=["sh"],
    sql_connections={"reporting": SecretStr("postgresql://reader@127.0.0.1:1/reports")},
    max_timeout_s=60,
)


async def submit(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    cat: Catalog,
    policy: TargetSettings,
    user_id: str,
    target: dict[str, Any],
) -> tuple[int, Any]:
    deps = ApiDeps(pool, publisher, cat, timedelta(seconds=60), targets=policy)
    headers = bearer(await make_api_key(pool, user_id))
    async with TestClient(TestServer(build_app(deps)), headers=headers) as client:
        body = {
            "user_id": user_id,
            "name": "policy",
            "schedule": {"type": "interval", "every_seconds": 60},
            "target": target,
        }
        resp = await client.post("/v1/jobs", json=body)
        return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("policy", "target", "field", "message"),
    [
        (
            TargetSettings(),
            {"type": "script", "command": ["sh", "-c", "true"]},
            "target.type",
            "script targets are not enabled",
        ),
        (
            POLICY,
            {"type": "script", "command": ["/usr/bin/env", "true"]},
            "target.command",
            "'/usr/bin/env' is not on the script allowlist",
        ),
        (
            POLICY,
            {"type": "sql", "connection": "billing", "statement": "SELECT 1"},
            "target.connection",
            "no SQL connection named 'billing' (reporting)",
        ),
        (
            POLICY,
            {"type": "http", "url": "http://127.0.0.1/hook", "timeout_s": 61},
            "target.timeout_s",
            "61 s is above the operator maximum of 60 s",
        ),
        (
            POLICY,
            {"type": "http", "url": "http://127.0.0.1/hook", "headers": {"X-Count": 3}},
            "target.headers.X-Count",
            "Input should be a valid string",
        ),
        (
            POLICY,
            {"type": "ftp", "url": "ftp://127.0.0.1/"},
            "target.type",
            None,
        ),
    ],
)
async def test_a_target_the_policy_forbids_is_refused_naming_the_field(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    topic_catalog: Catalog,
    user_id: str,
    policy: TargetSettings,
    target: dict[str, Any],
    field: str,
    message: str | None,
) -> None:
    status, body = await submit(pool, publisher, topic_catalog, policy, user_id, target)
    assert status == 422, body
    errors = {e["field"]: e["message"] for e in body["errors"]}
    assert field in errors, errors
    if message is not None:
        assert errors[field] == message


async def test_a_kafka_target_may_not_write_to_kjs_own_topics(
    pool: asyncpg.Pool, publisher: CommandPublisher, topic_catalog: Catalog, user_id: str
) -> None:
    target = {"type": "kafka", "topic": topic_catalog.commands.name, "value": {"forged": True}}
    status, body = await submit(pool, publisher, topic_catalog, POLICY, user_id, target)
    assert status == 422
    assert body["errors"] == [
        {
            "field": "target.topic",
            "message": f"{topic_catalog.commands.name!r} is one of kjs's own topics",
        }
    ]


@pytest.mark.parametrize(
    "target",
    [
        {"type": "script", "command": ["/bin/sh", "-c", "true"], "timeout_s": 60},
        {"type": "sql", "connection": "reporting", "statement": "SELECT 1"},
        {"type": "kafka", "topic": "orders.due", "value": 1},
    ],
)
async def test_a_target_within_the_policy_is_accepted(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    topic_catalog: Catalog,
    user_id: str,
    target: dict[str, Any],
) -> None:
    status, body = await submit(pool, publisher, topic_catalog, POLICY, user_id, target)
    assert status == 202, body

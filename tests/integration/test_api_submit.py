"""Submit and cancel against the real broker: acknowledged commands on the tenant's partition."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from api.app import MAX_BODY_BYTES, build_app
from api.deps import ApiDeps
from api.keys import Authenticator, new_key
from api.publisher import CommandPublisher
from core.settings import KafkaSettings
from schemas.v1.commands import COMMAND, CancelCommand, CreateCommand
from schemas.v1.ids import job_id_for_key
from tests.conftest import bearer, make_api_key
from topics.catalog import Catalog
from topics.partitioner import partition_for

pytestmark = pytest.mark.services

Client = TestClient[web.Request, web.Application]
GRACE = timedelta(seconds=60)


def _deps(pool: asyncpg.Pool, publisher: CommandPublisher, cat: Catalog) -> ApiDeps:
    return ApiDeps(pool, publisher, cat, GRACE)


@pytest.fixture
async def client(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    topic_catalog: Catalog,
    auth_headers: dict[str, str],
) -> AsyncIterator[Client]:
    app = build_app(_deps(pool, publisher, topic_catalog))
    async with TestClient(TestServer(app), headers=auth_headers) as c:
        yield c


def job_body(user_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": user_id,
        "name": "ping",
        "schedule": {"type": "interval", "every_seconds": 30},
        "target": {"type": "http", "method": "POST", "url": "http://example.test/hook"},
        "priority": "low",
        "retry": {"max_attempts": 2, "initial_delay_s": 1, "max_delay_s": 10},
    }
    body.update(changes)
    return body


async def records_for(
    kafka: KafkaSettings, cat: Catalog, user_id: str
) -> tuple[int, list[ConsumerRecord]]:
    """Every record keyed by ``user_id`` on its murmur2 partition, read up to the end offset.

    Reading to the high watermark (not "until something shows up") makes an absent record a
    definite answer. Returns (the partition read, the records found there).
    """
    key = user_id.encode()
    tp = TopicPartition(cat.commands.name, partition_for(key, cat.commands.partitions))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.kafka_bootstrap,
        group_id=f"t-api-{uuid.uuid4().hex}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found: list[ConsumerRecord] = []
        async with asyncio.timeout(30):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=500)
                found.extend(r for r in batch.get(tp, []) if r.key == key)
        return tp.partition, found
    finally:
        await consumer.stop()


async def commands_for(kafka: KafkaSettings, cat: Catalog, user_id: str) -> list[Any]:
    partition, found = await records_for(kafka, cat, user_id)
    assert all(r.partition == partition for r in found)
    return [COMMAND.validate_json(r.value) for r in found]


async def test_a_submit_is_acknowledged_on_the_tenants_partition(
    client: Client, kafka_settings: KafkaSettings, topic_catalog: Catalog, user_id: str
) -> None:
    resp = await client.post("/v1/jobs", json=job_body(user_id))

    assert resp.status == 202, await resp.text()
    body = await resp.json()
    assert body["status"] == "accepted"
    job_id = uuid.UUID(body["job_id"])
    assert resp.headers["Location"] == f"/v1/jobs/{job_id}"
    # Acknowledged means already in the log: read it back without waiting for it.
    commands = await commands_for(kafka_settings, topic_catalog, user_id)
    assert len(commands) == 1
    command = commands[0]
    assert isinstance(command, CreateCommand)
    assert command.job.job_id == job_id
    assert command.job.user_id == user_id
    assert command.job.priority == "low"
    assert command.job.retry.max_attempts == 2


async def test_the_record_value_is_plain_json_any_client_can_read(
    client: Client, kafka_settings: KafkaSettings, topic_catalog: Catalog, user_id: str
) -> None:
    resp = await client.post("/v1/jobs", json=job_body(user_id, idempotency_key="raw"))
    assert resp.status == 202
    _, records = await records_for(kafka_settings, topic_catalog, user_id)
    value = json.loads(records[0].value)
    assert value["type"] == "create"
    assert value["job"]["job_id"] == (await resp.json())["job_id"]
    assert value["job"]["idempotency_key"] == "raw"


async def test_the_same_idempotency_key_answers_the_same_job_id(
    client: Client, kafka_settings: KafkaSettings, topic_catalog: Catalog, user_id: str
) -> None:
    body = job_body(user_id, idempotency_key="invoice-42")
    first = await (await client.post("/v1/jobs", json=body)).json()
    second = await (await client.post("/v1/jobs", json=body)).json()
    other = await (await client.post("/v1/jobs", json=job_body(user_id))).json()

    assert first["job_id"] == second["job_id"] == str(job_id_for_key(user_id, "invoice-42"))
    assert other["job_id"] != first["job_id"]
    commands = await commands_for(kafka_settings, topic_catalog, user_id)
    assert [c.job.job_id for c in commands] == [
        uuid.UUID(first["job_id"]),
        uuid.UUID(first["job_id"]),
        uuid.UUID(other["job_id"]),
    ]


def _past(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"target": {"type": "carrier-pigeon"}}, "target.type"),
        ({"extra": 1}, "extra"),
        ({"schedule": {"type": "cron", "expression": "61 * * * *"}}, "schedule.expression"),
        (
            {
                "schedule": {
                    "type": "cron",
                    "expression": "* * * * *",
                    "timezone": "Europe/Atlantis",
                }
            },
            "schedule.timezone",
        ),
        ({"schedule": {"type": "once", "at": _past(3600)}}, "schedule.at"),
        ({"name": ""}, "name"),
        ({"priority": "urgent"}, "priority"),
    ],
)
async def test_an_invalid_submit_is_422_naming_the_field_and_produces_nothing(
    client: Client,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
    changes: dict[str, Any],
    field: str,
) -> None:
    resp = await client.post("/v1/jobs", json=job_body(user_id, **changes))

    assert resp.status == 422
    errors = (await resp.json())["errors"]
    assert field in [e["field"] for e in errors], errors
    assert all(e["message"] for e in errors)
    assert await commands_for(kafka_settings, topic_catalog, user_id) == []


async def test_a_once_job_within_the_grace_is_accepted(client: Client, user_id: str) -> None:
    resp = await client.post(
        "/v1/jobs", json=job_body(user_id, schedule={"type": "once", "at": _past(5)})
    )
    assert resp.status == 202, await resp.text()


async def test_malformed_json_is_422_on_the_body(client: Client) -> None:
    resp = await client.post(
        "/v1/jobs", data=b'{"user_id": ', headers={"Content-Type": "application/json"}
    )
    assert resp.status == 422
    assert [e["field"] for e in (await resp.json())["errors"]] == ["body"]


async def test_a_body_over_the_limit_is_413(client: Client, user_id: str) -> None:
    padded = job_body(user_id, name="x", target={"type": "kafka", "topic": "t", "value": ""})
    padded["target"]["value"] = "x" * MAX_BODY_BYTES
    resp = await client.post("/v1/jobs", json=padded)
    assert resp.status == 413
    assert "error" in await resp.json()


async def test_kafka_refusing_connections_is_503_and_nothing_is_written(
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
    auth_headers: dict[str, str],
) -> None:
    dead = CommandPublisher(KafkaSettings(kafka_bootstrap="127.0.0.1:1"), timeout_s=2.0)
    try:
        async with TestClient(
            TestServer(build_app(_deps(pool, dead, topic_catalog))), headers=auth_headers
        ) as c:
            resp = await c.post("/v1/jobs", json=job_body(user_id, idempotency_key="k"))
            assert resp.status == 503
            assert int(resp.headers["Retry-After"]) > 0
            assert "error" in await resp.json()
    finally:
        await dead.close()
    assert await commands_for(kafka_settings, topic_catalog, user_id) == []


async def test_a_broker_that_never_answers_times_out_to_503(
    pool: asyncpg.Pool, topic_catalog: Catalog, user_id: str, auth_headers: dict[str, str]
) -> None:
    """A silent broker (accepts TCP, never replies) must not hold the request past the timeout."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hung = CommandPublisher(KafkaSettings(kafka_bootstrap=f"127.0.0.1:{port}"), timeout_s=1.0)
    try:
        async with TestClient(
            TestServer(build_app(_deps(pool, hung, topic_catalog))), headers=auth_headers
        ) as c:
            started = asyncio.get_running_loop().time()
            resp = await c.post("/v1/jobs", json=job_body(user_id))
            elapsed = asyncio.get_running_loop().time() - started
            assert resp.status == 503
            assert "Retry-After" in resp.headers
            assert elapsed < 5.0
    finally:
        await hung.close()
        server.close()
        await server.wait_closed()


async def test_a_submit_is_accepted_while_postgres_is_down(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
) -> None:
    # The key was verified while Postgres answered; it stays good through the outage.
    key = await make_api_key(pool, user_id)
    authenticator = Authenticator(pool, cache_s=0.0, stale_s=300.0)
    assert await authenticator.authenticate(key) is not None
    dead = await asyncpg.create_pool("postgresql://kjs@127.0.0.1:1/kjs", min_size=0)
    authenticator.pool = dead
    try:
        deps = ApiDeps(dead, publisher, topic_catalog, GRACE, authenticator=authenticator)
        async with TestClient(TestServer(build_app(deps)), headers=bearer(key)) as c:
            resp = await c.post("/v1/jobs", json=job_body(user_id))
            assert resp.status == 202
            # A key never verified cannot be checked now: 503, not accepted and not 401.
            resp = await c.post("/v1/jobs", json=job_body(user_id), headers=bearer(new_key()))
            assert resp.status == 503
    finally:
        await dead.close()
    assert len(await commands_for(kafka_settings, topic_catalog, user_id)) == 1


async def _insert_job(pool: asyncpg.Pool, user_id: str, status: str) -> uuid.UUID:
    job_id = uuid.uuid4()
    await pool.execute(
        """INSERT INTO kjs_jobs (job_id, user_id, shard, name, schedule, target, priority, retry,
                                 status, next_run_at, source)
           VALUES ($1, $2, 0, 'j', $3, $4, 'normal', $5, $6, $7, 'test')""",
        job_id,
        user_id,
        {"type": "interval", "every_seconds": 30},
        {"type": "kafka", "topic": "out"},
        {"max_attempts": 3, "initial_delay_s": 1.0, "max_delay_s": 300.0},
        status,
        datetime.now(UTC) + timedelta(hours=1) if status == "scheduled" else None,
    )
    return job_id


@pytest.mark.parametrize("status", ["scheduled", "queued"])
async def test_cancelling_a_live_job_produces_a_cancel_command(
    client: Client,
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
    status: str,
) -> None:
    job_id = await _insert_job(pool, user_id, status)

    resp = await client.delete(f"/v1/jobs/{job_id}")

    assert resp.status == 202, await resp.text()
    assert await resp.json() == {"job_id": str(job_id), "status": "cancelling"}
    commands = await commands_for(kafka_settings, topic_catalog, user_id)
    assert commands == [CancelCommand(type="cancel", user_id=user_id, job_id=job_id)]


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
async def test_cancelling_a_finished_job_is_409_and_produces_nothing(
    client: Client,
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
    status: str,
) -> None:
    job_id = await _insert_job(pool, user_id, status)

    resp = await client.delete(f"/v1/jobs/{job_id}")

    assert resp.status == 409
    assert await resp.json() == {"error": "job already finished", "status": status}
    assert await commands_for(kafka_settings, topic_catalog, user_id) == []


async def test_cancel_with_kafka_down_is_503(
    pool: asyncpg.Pool, topic_catalog: Catalog, user_id: str, auth_headers: dict[str, str]
) -> None:
    job_id = await _insert_job(pool, user_id, "scheduled")
    dead = CommandPublisher(KafkaSettings(kafka_bootstrap="127.0.0.1:1"), timeout_s=2.0)
    try:
        async with TestClient(
            TestServer(build_app(_deps(pool, dead, topic_catalog))), headers=auth_headers
        ) as c:
            resp = await c.delete(f"/v1/jobs/{job_id}")
            assert resp.status == 503
            assert "Retry-After" in resp.headers
    finally:
        await dead.close()

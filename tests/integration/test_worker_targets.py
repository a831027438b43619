"""Targets through a whole worker: due event in, result event out, policy checked between."""

# The harness's fixtures are imported by name, which pyflakes reads as unused imports and
# their parameters as redefinitions.
# ruff: noqa: F401, F811

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from core.settings import KafkaSettings, TargetSettings
from tests.integration.worker_harness import (
    Execution,
    StartWorker,
    TopicReader,
    cat,
    due_event,
    http_target,
    insert_execution,
    insert_job,
    lane_kafka,
    producer,
    result_for,
    results,
    send_due,
    shard_of,
    start_worker,
)
from tests.support.targets import RecordingTarget
from topics.catalog import Catalog

pytestmark = pytest.mark.services


@pytest.fixture
async def busy_url() -> AsyncIterator[str]:
    """A target that is always busy and says when to come back."""

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "42"})

    app = web.Application()
    app.router.add_post("/busy", busy)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/busy"
    await runner.cleanup()


async def queued(
    pool: asyncpg.Pool, user_id: str, lane_kafka: KafkaSettings, at: datetime
) -> Execution:
    """A queued execution of a fresh job, as the scheduler leaves it before dispatch."""
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, "http://127.0.0.1:9/unused")
    return await insert_execution(pool, job_id, user_id, shard, at)


async def test_a_script_job_runs_on_the_worker_and_reports_its_output(
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    user_id: str,
) -> None:
    await start_worker(targets=TargetSettings(script_enabled=True, script_allowlist=["sh"]))
    execution = await queued(pool, user_id, lane_kafka, datetime.now(UTC))
    target = {"type": "script", "command": ["sh", "-c", 'echo "key=$KJS_IDEMPOTENCY_KEY"']}

    await send_due(producer, cat, due_event(execution, target=target))
    _, result = await result_for(results, execution.execution_id)

    assert result.status == "succeeded", result
    assert result.output_excerpt is not None
    assert json.loads(result.output_excerpt)["stdout"] == f"key={execution.execution_id}\n"


async def test_a_target_the_policy_forbids_is_reported_failed_for_good_and_not_run(
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    user_id: str,
) -> None:
    # Accepted before the operator disabled scripts, say: the worker is the last check.
    await start_worker(targets=TargetSettings(script_enabled=False))
    script = await queued(pool, user_id, lane_kafka, datetime.now(UTC))
    kafka = await queued(pool, user_id, lane_kafka, datetime.now(UTC) + timedelta(seconds=1))
    own_topic = {"type": "kafka", "topic": cat.results.name, "value": "forged result"}

    await send_due(producer, cat, due_event(script, target={"type": "script", "command": ["sh"]}))
    await send_due(producer, cat, due_event(kafka, target=own_topic))
    _, refused_script = await result_for(results, script.execution_id)
    _, refused_kafka = await result_for(results, kafka.execution_id)

    assert (refused_script.status, refused_script.retryable) == ("failed", False)
    assert refused_script.error == "refused by policy: target.type: script targets are not enabled"
    assert (refused_kafka.status, refused_kafka.retryable) == ("failed", False)
    assert refused_kafka.error is not None and "target.topic" in refused_kafka.error
    # Nothing but the two results reached the results topic: no forged record.
    assert len(await results.read_to_end()) == 2


async def test_a_sql_job_runs_on_its_named_connection(
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    database_url: str,
    user_id: str,
) -> None:
    table = f"t_sql_{uuid.uuid4().hex[:10]}"
    await pool.execute(f"CREATE TABLE {table} (n int)")
    try:
        connections = {"sql_connections": {"app": SecretStr(database_url)}}
        await start_worker(targets=TargetSettings(**connections))
        execution = await queued(pool, user_id, lane_kafka, datetime.now(UTC))
        target = {
            "type": "sql",
            "connection": "app",
            "statement": f"INSERT INTO {table} SELECT generate_series(1, $1::int)",
            "params": [4],
        }
        await send_due(producer, cat, due_event(execution, target=target))
        _, result = await result_for(results, execution.execution_id)

        assert result.status == "succeeded", result
        assert result.output_excerpt is not None
        assert json.loads(result.output_excerpt)["rows_affected"] == 4
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 4
    finally:
        await pool.execute(f"DROP TABLE {table}")


async def test_retry_after_reaches_the_result_event(
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    busy_url: str,
    user_id: str,
) -> None:
    await start_worker()
    execution = await queued(pool, user_id, lane_kafka, datetime.now(UTC))

    await send_due(producer, cat, due_event(execution, busy_url))
    _, result = await result_for(results, execution.execution_id)

    assert (result.status, result.http_status, result.retryable) == ("failed", 503, True)
    assert result.retry_after_s == 42.0


async def test_a_retry_is_held_until_its_not_before(
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    await start_worker()
    now = datetime.now(UTC)
    execution = await queued(pool, user_id, lane_kafka, now)
    not_before = now + timedelta(seconds=1.5)

    await send_due(producer, cat, due_event(execution, http_target.url(), not_before=not_before))
    _, result = await result_for(results, execution.execution_id)

    (hit,) = http_target.hits_for(execution.execution_id)
    assert result.status == "succeeded"
    assert execution.scheduled_for < not_before <= result.started_at <= hit.at

"""Traces end to end: a traceparent given at submit reaches the HTTP target, in one trace.

The whole pipeline runs in-process on the real broker and Postgres: the API app, the shards'
command and result handlers (fed the records the API and the worker produced), a shard timer
on the system clock, a worker and a recording HTTP target. Spans go to OpenTelemetry's
in-memory exporter (``core.tracing.install``), so the test sees every span of every step.
"""

# The harness's fixtures are imported by name, which pyflakes reads as unused imports and
# their parameters as redefinitions.
# ruff: noqa: F401, F811

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from uuid import UUID

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer, ConsumerRecord
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.app import build_app
from api.deps import ApiDeps
from api.publisher import CommandPublisher
from core import tracing
from core.db import create_pool
from core.settings import DatabaseSettings, KafkaSettings, SchedulerSettings
from scheduler.commands import CommandHandler
from scheduler.firing import Dispatcher
from scheduler.kafka_io import ProducerSender
from scheduler.records import Record
from scheduler.results import ResultHandler
from scheduler.shards import Shards
from schemas.v1.events import read_result_record
from tests.conftest import RUN_ID, bearer, fresh_database, make_api_key
from tests.integration.worker_harness import (
    LOCAL_TARGETS,
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
from tests.support.spans import spans
from tests.support.targets import Hit, RecordingTarget
from tests.support.waiting import eventually
from topics.catalog import Catalog
from topics.producer import durable_producer

pytestmark = pytest.mark.services

Client = TestClient[web.Request, web.Application]
SUBMITTED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Pipeline:
    client: Client
    pool: asyncpg.Pool
    commands: TopicReader
    results: TopicReader
    handler: CommandHandler
    recorder: ResultHandler
    target: RecordingTarget


@pytest.fixture
async def pipeline(
    lane_kafka: KafkaSettings,
    cat: Catalog,
    http_target: RecordingTarget,
    start_worker: StartWorker,
    results: TopicReader,
    user_id: str,
) -> AsyncIterator[Pipeline]:
    """The API, the shards of a database of the test's own (all of its command partitions,
    so claiming them fences no other test's scheduler) and a worker of the normal lane."""
    async with fresh_database(f"kjs_test_{RUN_ID}_traces_{uuid.uuid4().hex[:6]}") as dsn:
        pool = await create_pool(DatabaseSettings(), dsn=dsn)
        producer = durable_producer(lane_kafka)
        await producer.start()
        sender = ProducerSender(producer)
        shards = Shards(pool, Dispatcher(pool, sender, cat), SchedulerSettings(), "t-traces")
        await shards.assign(range(cat.commands.partitions))
        publisher = CommandPublisher(lane_kafka, 10.0)
        commands = TopicReader(lane_kafka.kafka_bootstrap, cat.commands)
        await commands.start()
        app = build_app(ApiDeps(pool, publisher, cat, timedelta(seconds=60), targets=LOCAL_TARGETS))
        worker = await start_worker(database_url=dsn)
        try:
            headers = bearer(await make_api_key(pool, user_id))
            async with TestClient(TestServer(app), headers=headers) as client:
                yield Pipeline(
                    client,
                    pool,
                    commands,
                    results,
                    CommandHandler(
                        shards, pool, sender, cat, SchedulerSettings(), targets=LOCAL_TARGETS
                    ),
                    ResultHandler(shards, pool, sender, cat),
                    http_target,
                )
        finally:
            worker.worker.stop()
            await asyncio.wait_for(worker.task, timeout=15)
            await commands.stop()
            await publisher.close()
            await shards.stop()
            await producer.stop()
            await pool.close()


def as_record(record: ConsumerRecord) -> Record:
    """A consumed record as the scheduler's handlers take it (faust's event, in production)."""
    return Record(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        list(record.headers),
        record.timestamp / 1000,
    )


async def run_job(p: Pipeline, user_id: str, headers: dict[str, str]) -> tuple[UUID, Hit]:
    """Submit a one-time HTTP job due in a second with ``headers``; apply its command, let it
    fire and run, record its result. Returns the job id and the target's call."""
    at = datetime.now(UTC) + timedelta(seconds=1)
    body = {
        "user_id": user_id,
        "name": "traced",
        "schedule": {"type": "once", "at": at.isoformat()},
        "target": {"type": "http", "method": "POST", "url": p.target.url("traced")},
    }
    response = await p.client.post("/v1/jobs", json=body, headers=headers)
    assert response.status == 202, await response.text()
    job_id = UUID((await response.json())["job_id"])

    async def command() -> ConsumerRecord | None:
        for record in await p.commands.poll():
            if json.loads(record.value)["job"]["job_id"] == str(job_id):
                return record
        return None

    assert await p.handler.handle(as_record(await eventually(command, what="the command"))) == (
        "created"
    )

    async def execution() -> UUID | None:
        found: UUID | None = await p.pool.fetchval(
            "SELECT execution_id FROM kjs_executions WHERE job_id = $1", job_id
        )
        return found

    execution_id = await eventually(execution, what="the job to fire")

    async def called() -> Hit | None:
        hits = p.target.hits_for(execution_id)
        return hits[0] if hits else None

    hit = await eventually(called, what="the target to be called")
    record, _ = await result_for(p.results, execution_id)
    assert await p.recorder.handle_batch([as_record(record)]) == ["recorded"]
    return job_id, hit


def traceparent_of(hit: Hit) -> str:
    [value] = [v for k, v in hit.headers.items() if k.lower() == "traceparent"]
    return value


def ids(traceparent: str) -> tuple[str, str]:
    """(trace id, span id) of a traceparent."""
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


def hexes(span: ReadableSpan) -> tuple[str, str | None]:
    """(span id, parent span id) in hex."""
    context = span.get_span_context()
    parent = span.parent
    return f"{context.span_id:016x}", None if parent is None else f"{parent.span_id:016x}"


async def spans_of(
    exporter: InMemorySpanExporter, trace_id: str, count: int
) -> dict[str, ReadableSpan]:
    """The trace's spans by name, once ``count`` of them ended (the fire span ends when the
    dispatch's acks are in, which may be after the worker has the event)."""

    async def ended() -> Sequence[ReadableSpan] | None:
        found = [
            s
            for s in exporter.get_finished_spans()
            if f"{s.get_span_context().trace_id:032x}" == trace_id
        ]
        return found if len(found) >= count else None

    found = await eventually(ended, what=f"{count} spans of trace {trace_id}")
    by_name = {s.name: s for s in found}
    assert len(by_name) == len(found), f"a step has two spans: {[s.name for s in found]}"
    return by_name


async def test_the_target_gets_the_submitted_trace_and_the_spans_form_one_tree(
    pipeline: Pipeline, spans: InMemorySpanExporter, user_id: str
) -> None:
    job_id, hit = await run_job(pipeline, user_id, {"traceparent": SUBMITTED})
    trace_id, submitted_span = ids(SUBMITTED)

    got_trace, got_parent = ids(traceparent_of(hit))
    assert got_trace == trace_id, "the target's traceparent is not in the submitted trace"

    steps = await spans_of(spans, trace_id, 6)
    assert set(steps) == {"accept", "apply", "fire", "claim", "run", "record"}
    parents = {name: hexes(span)[1] for name, span in steps.items()}
    own = {name: hexes(span)[0] for name, span in steps.items()}
    assert parents == {
        "accept": submitted_span,  # the caller's span, remote
        "apply": own["accept"],
        "fire": own["apply"],
        "claim": own["fire"],
        "run": own["fire"],
        "record": own["run"],
    }
    assert got_parent == own["run"], "the target's parent span is not the run"
    stored = await pipeline.pool.fetchval(
        "SELECT traceparent FROM kjs_jobs WHERE job_id = $1", job_id
    )
    assert ids(stored) == (trace_id, own["apply"])


async def test_a_malformed_traceparent_is_ignored_and_the_job_runs_in_a_new_trace(
    pipeline: Pipeline, spans: InMemorySpanExporter, user_id: str
) -> None:
    _, hit = await run_job(pipeline, user_id, {"traceparent": "00-not-a-trace-01"})
    trace_id, _ = ids(traceparent_of(hit))
    steps = await spans_of(spans, trace_id, 6)
    assert steps["accept"].parent is None, "the accept span should start a new trace"


async def test_with_tracing_off_the_submitted_trace_still_reaches_the_target(
    pipeline: Pipeline, user_id: str
) -> None:
    assert not tracing.enabled()
    job_id, hit = await run_job(pipeline, user_id, {"traceparent": SUBMITTED})
    trace_id, submitted_span = ids(SUBMITTED)
    got_trace, got_span = ids(traceparent_of(hit))
    assert got_trace == trace_id
    assert got_span != submitted_span, "the run must be a span of its own, a child"
    stored = await pipeline.pool.fetchval(
        "SELECT traceparent FROM kjs_executions WHERE job_id = $1", job_id
    )
    assert stored == SUBMITTED


async def test_without_a_trace_and_tracing_off_nothing_is_added(
    pipeline: Pipeline, user_id: str
) -> None:
    job_id, hit = await run_job(pipeline, user_id, {})
    assert not any(k.lower() == "traceparent" for k in hit.headers)
    stored = await pipeline.pool.fetchrow(
        "SELECT j.traceparent AS job, e.traceparent AS run FROM kjs_jobs j"
        " JOIN kjs_executions e USING (job_id) WHERE job_id = $1",
        job_id,
    )
    assert (stored["job"], stored["run"]) == (None, None)


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps the path and size of every export it receives."""

    received: ClassVar[list[tuple[str, str, int]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((self.path, self.headers.get("Content-Type", ""), len(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_configured_from_otel_variables_spans_reach_an_otlp_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a process does at start (``tracing.configure``) with the standard variables: the
    OTLP/HTTP exporter posts protobuf to the collector's /v1/traces."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        try:
            assert tracing.configure("kjs-test")
            tracing.end(tracing.start("apply", SUBMITTED))
            assert tracing.STATE.configured.force_flush(10_000)
        finally:
            tracing.configure("kjs-test", {})
        assert [(path, kind) for path, kind, _ in _Collector.received] == [
            ("/v1/traces", "application/x-protobuf")
        ]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_a_due_event_without_a_trace_runs_in_a_new_trace_of_its_claim(
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    http_target: RecordingTarget,
    user_id: str,
    spans: InMemorySpanExporter,
) -> None:
    """A buffered run, or a due event of a scheduler without tracing: the worker's claim
    starts the trace, and the run, the target's call and the result are in it."""
    await start_worker()
    shard = shard_of(user_id, lane_kafka)
    url = http_target.url("untraced")
    execution = await insert_execution(
        pool, await insert_job(pool, user_id, shard, url), user_id, shard, datetime.now(UTC)
    )
    await send_due(producer, cat, due_event(execution, url))
    record, _ = await result_for(results, execution.execution_id)
    [hit] = http_target.hits_for(execution.execution_id)
    trace_id, target_parent = ids(traceparent_of(hit))

    steps = await spans_of(spans, trace_id, 2)
    assert set(steps) == {"claim", "run"}
    claim, run = hexes(steps["claim"]), hexes(steps["run"])
    assert (claim[1], run[1], target_parent) == (None, claim[0], run[0])
    run_context = tracing.formatted(steps["run"].get_span_context())
    held = read_result_record(record.value, list(record.headers))
    assert held.traceparents[execution.execution_id] == run_context == traceparent_of(hit)

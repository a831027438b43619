"""A lane worker against the real broker and Postgres.

Each test gets its own topic namespace, hence its own due topic and consumer group: a
worker here must never pick up due events another test (the scheduler's, say) produced,
and must not inherit another test's committed offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import asyncpg
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from kjs.settings import DatabaseSettings, KafkaSettings, WorkerSettings
from schemas.v1.events import DueEvent, ResultEvent
from topics.admin import create_topics
from topics.catalog import Catalog, TopicSpec, catalog
from topics.dlq import REASON, SOURCE_OFFSET
from topics.partitioner import partition_for
from topics.producer import durable_producer
from workers.main import Worker

pytestmark = pytest.mark.services

T = TypeVar("T")
DEADLINE_S = 30.0


async def eventually(
    check: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = DEADLINE_S
) -> T:
    """Poll ``check`` until it returns something other than None, or fail saying what."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


# --- a recording HTTP target -------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    idempotency_key: str | None
    arrived_at: datetime
    body: bytes


@dataclass
class RecordingTarget:
    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    # Requests wait here until it is set; a test clears it to hold requests open.
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    open_requests: int = 0
    most_open: int = 0

    def hits_for(self, execution_id: UUID) -> list[Hit]:
        return [h for h in self.hits if h.idempotency_key == str(execution_id)]


@pytest.fixture
async def http_target() -> AsyncIterator[RecordingTarget]:
    target = RecordingTarget()
    target.gate.set()

    async def record(request: web.Request) -> web.Response:
        arrived = datetime.now(UTC)
        body = await request.read()
        target.hits.append(Hit(request.headers.get("Idempotency-Key"), arrived, body))
        target.open_requests += 1
        target.most_open = max(target.most_open, target.open_requests)
        try:
            await target.gate.wait()
        finally:
            target.open_requests -= 1
        return web.Response(text="done")

    app = web.Application()
    app.router.add_post("/hook", record)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    target.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield target
    target.gate.set()
    await runner.cleanup()


# --- Kafka: fresh topics, a producer, readers --------------------------------------------


@pytest.fixture
async def lane_kafka(services: None, kafka_settings: KafkaSettings) -> KafkaSettings:
    ns = f"{kafka_settings.namespace}w{uuid.uuid4().hex[:8]}."
    settings = kafka_settings.model_copy(update={"namespace": ns})
    await create_topics(settings.kafka_bootstrap, catalog(settings))
    return settings


@pytest.fixture
def cat(lane_kafka: KafkaSettings) -> Catalog:
    return catalog(lane_kafka)


@pytest.fixture
async def producer(lane_kafka: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    p = durable_producer(lane_kafka.kafka_bootstrap)
    try:
        await p.start()
        yield p
    finally:
        await p.stop()


class TopicReader:
    """Reads every partition of a topic from the beginning, without a consumer group."""

    def __init__(self, bootstrap: str, spec: TopicSpec) -> None:
        self.topic = spec.name
        self.records: list[Any] = []
        self._tps = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_beginning(*self._tps)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def poll(self) -> list[Any]:
        batch = await self._consumer.getmany(timeout_ms=100)
        for records in batch.values():
            self.records.extend(records)
        return self.records

    async def read_to_end(self) -> list[Any]:
        """Everything in the topic now: used to show that something was *not* produced."""
        assigned = self._consumer.assignment()
        ends = await self._consumer.end_offsets(list(assigned))

        async def caught_up() -> bool | None:
            await self.poll()
            positions = {tp: await self._position(tp) for tp in ends}
            return True if all(positions[tp] >= end for tp, end in ends.items()) else None

        await eventually(caught_up, f"reading {self.topic} to its end")
        return self.records

    async def _position(self, tp: TopicPartition) -> int:
        return int(await self._consumer.position(tp))


@pytest.fixture
async def results(lane_kafka: KafkaSettings, cat: Catalog) -> AsyncIterator[TopicReader]:
    reader = TopicReader(lane_kafka.kafka_bootstrap, cat.results)
    try:
        await reader.start()
        yield reader
    finally:
        await reader.stop()


@pytest.fixture
async def dead_letters(lane_kafka: KafkaSettings, cat: Catalog) -> AsyncIterator[TopicReader]:
    reader = TopicReader(lane_kafka.kafka_bootstrap, cat.dlq)
    try:
        await reader.start()
        yield reader
    finally:
        await reader.stop()


async def result_for(reader: TopicReader, execution_id: UUID) -> tuple[Any, ResultEvent]:
    async def find() -> tuple[Any, ResultEvent] | None:
        for record in await reader.poll():
            event = ResultEvent.model_validate_json(record.value)
            if event.execution_id == execution_id:
                return record, event
        return None

    return await eventually(find, f"the result of execution {execution_id}")


async def group_offset(admin: AIOKafkaAdminClient, cat: Catalog, partition: int) -> int:
    """The lane group's committed offset of a due-topic partition; -1 if none yet."""
    tp = TopicPartition(cat.due["normal"].name, partition)
    offsets = await admin.list_consumer_group_offsets(cat.worker_group("normal"), partitions=[tp])
    at = offsets.get(tp)
    return -1 if at is None else int(at.offset)


@pytest.fixture
async def committed(
    lane_kafka: KafkaSettings, cat: Catalog
) -> AsyncIterator[Callable[[int, int], Awaitable[None]]]:
    """Wait until the lane's group committed past an offset of a partition of the due topic.

    Offsets are committed only over a contiguous run of finished records, so this is the
    proof that the record at that offset, and everything before it, has been processed.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=lane_kafka.kafka_bootstrap)

    async def past(partition: int, offset: int) -> None:
        async def check() -> int | None:
            at = await group_offset(admin, cat, partition)
            return at if at > offset else None

        await eventually(check, f"the worker group to commit past {partition}@{offset}")

    try:
        await admin.start()
        yield past
    finally:
        await admin.close()


async def committed_offset(lane_kafka: KafkaSettings, cat: Catalog, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=lane_kafka.kafka_bootstrap)
    try:
        await admin.start()
        return await group_offset(admin, cat, partition)
    finally:
        await admin.close()


# --- Postgres rows -----------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    execution_id: UUID
    job_id: UUID
    user_id: str
    shard: int
    scheduled_for: datetime


async def insert_job(pool: asyncpg.Pool, user_id: str, shard: int, url: str) -> UUID:
    job_id = uuid.uuid4()
    await pool.execute(
        """
        INSERT INTO kjs_jobs (job_id, user_id, shard, name, schedule, target, priority, retry,
                              status, next_run_at, source)
        VALUES ($1, $2, $3, 'worker test', $4, $5, 'normal', $6, 'queued', NULL, 'test')
        """,
        job_id,
        user_id,
        shard,
        {"type": "once", "at": datetime.now(UTC).isoformat()},
        {"type": "http", "method": "POST", "url": url},
        {"max_attempts": 1, "initial_delay_s": 1, "max_delay_s": 1},
    )
    return job_id


async def insert_execution(
    pool: asyncpg.Pool,
    job_id: UUID,
    user_id: str,
    shard: int,
    scheduled_for: datetime,
    status: str = "queued",
) -> Execution:
    """An execution row as the scheduler leaves it; a non-queued one as after its run."""
    execution_id = uuid.uuid4()
    started = status not in ("queued", "cancelled")
    finished = status in ("succeeded", "failed", "cancelled")
    await pool.execute(
        """
        INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                                    attempt, lane, status, dispatched_at, started_at,
                                    finished_at, worker)
        VALUES ($1, $2, $3, $4, $5, 1, 'normal', $6, now(),
                CASE WHEN $7 THEN now() END, CASE WHEN $8 THEN now() END,
                CASE WHEN $7 THEN 'earlier-worker' END)
        """,
        execution_id,
        job_id,
        user_id,
        shard,
        scheduled_for,
        status,
        started,
        finished,
    )
    return Execution(execution_id, job_id, user_id, shard, scheduled_for)


async def execution_row(pool: asyncpg.Pool, execution_id: UUID) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM kjs_executions WHERE execution_id = $1", execution_id)
    assert row is not None
    return row


def due_event(execution: Execution, url: str) -> DueEvent:
    return DueEvent.model_validate(
        {
            "execution_id": execution.execution_id,
            "job_id": execution.job_id,
            "user_id": execution.user_id,
            "attempt": 1,
            "scheduled_for": execution.scheduled_for,
            "lane": "normal",
            "target": {"type": "http", "method": "POST", "url": url, "body": {"n": 1}},
            "shard": execution.shard,
        }
    )


async def send_due(
    producer: AIOKafkaProducer, cat: Catalog, event: DueEvent, partition: int | None = None
) -> Any:
    """Produce as the scheduler does (key = job_id); returns the record's metadata."""
    return await producer.send_and_wait(
        cat.due["normal"].name,
        key=str(event.job_id).encode(),
        value=event.model_dump_json().encode(),
        partition=partition,
    )


# --- a network fault between the worker and Postgres ----------------------------------


class CuttableProxy:
    """Forwards TCP to Postgres until cut; while cut, it accepts and drops at once, like a
    restarting server, and counts those attempts so the test can see the retries."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self.cut = False
        self.refused = 0
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def sever(self) -> None:
        """Cut now: every open connection is dropped, and new ones are refused."""
        self.cut = True
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            self.refused += 1
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._links |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[tuple[CuttableProxy, str]]:
    parts = urlsplit(database_url)
    p = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await p.start()
    netloc = f"{parts.username}@127.0.0.1:{p.port}" if parts.username else f"127.0.0.1:{p.port}"
    try:
        yield p, urlunsplit(parts._replace(netloc=netloc))
    finally:
        await p.stop()


# --- the worker --------------------------------------------------------------------------


@dataclass
class RunningWorker:
    worker: Worker
    task: asyncio.Task[None]


StartWorker = Callable[..., Awaitable[RunningWorker]]


@pytest.fixture
async def start_worker(lane_kafka: KafkaSettings, database_url: str) -> AsyncIterator[StartWorker]:
    """Start workers in-process, as ``kjs worker`` would, with settings passed in."""
    started: list[RunningWorker] = []

    async def start(
        concurrency: int = 8,
        drain_deadline_s: float = 5.0,
        max_held: int = 100,
        database_url: str = database_url,
    ) -> RunningWorker:
        w = Worker(
            lane_kafka,
            DatabaseSettings(database_url=SecretStr(database_url)),
            WorkerSettings(
                worker_id=f"test-worker-{uuid.uuid4().hex[:6]}", worker_concurrency=concurrency
            ),
            "normal",
            drain_deadline_s=drain_deadline_s,
            max_held=max_held,
        )
        running = RunningWorker(w, asyncio.create_task(w.run()))
        started.append(running)

        async def assigned() -> bool | None:
            if running.task.done():
                running.task.result()  # surfaces a start-up failure instead of a timeout
            return True if w.assigned.is_set() else None

        await eventually(assigned, "the worker to be assigned its partitions")
        return running

    yield start
    for running in started:
        running.worker.stop()
    for running in started:
        await asyncio.wait_for(running.task, timeout=15)


@pytest.fixture
async def worker(start_worker: StartWorker) -> Worker:
    return (await start_worker()).worker


def shard_of(user_id: str, lane_kafka: KafkaSettings) -> int:
    return partition_for(user_id.encode(), lane_kafka.command_partitions)


# --- tests -------------------------------------------------------------------------------


async def test_a_due_event_runs_on_its_instant_and_reports_on_the_users_partition(
    worker: Worker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, http_target.url)
    # Well beyond the time the event takes to reach the worker: it has to hold it.
    scheduled_for = datetime.now(UTC) + timedelta(milliseconds=800)
    execution = await insert_execution(pool, job_id, user_id, shard, scheduled_for)

    await send_due(producer, cat, due_event(execution, http_target.url))
    record, result = await result_for(results, execution.execution_id)

    (hit,) = http_target.hits_for(execution.execution_id)
    assert hit.arrived_at >= scheduled_for
    assert hit.body == b'{"n": 1}'
    assert record.partition == partition_for(user_id.encode(), cat.results.partitions)
    assert record.key == user_id.encode()
    assert result.status == "succeeded"
    assert result.http_status == 200
    assert result.output_excerpt == "done"
    assert (result.worker, result.job_id, result.user_id, result.attempt) == (
        worker.id,
        job_id,
        user_id,
        1,
    )
    assert scheduled_for <= result.started_at <= hit.arrived_at <= result.finished_at
    row = await execution_row(pool, execution.execution_id)
    # The worker only claims; the owning scheduler shard records the outcome.
    assert row["status"] == "running"
    assert row["worker"] == worker.id
    assert row["started_at"] is not None and row["lease_until"] > row["started_at"]


@pytest.mark.parametrize("status", ["running", "succeeded", "failed", "cancelled"])
async def test_a_redelivered_event_of_an_execution_that_is_not_queued_is_not_run(
    status: str,
    worker: Worker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    committed: Callable[[int, int], Awaitable[None]],
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, http_target.url)
    now = datetime.now(UTC)
    earlier = await insert_execution(pool, job_id, user_id, shard, now, status=status)
    before = await execution_row(pool, earlier.execution_id)
    later = await insert_execution(pool, job_id, user_id, shard, now + timedelta(seconds=1))

    # Same job, same key, same partition: the later record's commit covers the earlier one.
    await send_due(producer, cat, due_event(earlier, http_target.url))
    marker = await send_due(producer, cat, due_event(later, http_target.url))
    await result_for(results, later.execution_id)
    await committed(marker.partition, marker.offset)

    assert len(http_target.hits_for(later.execution_id)) == 1
    assert http_target.hits_for(earlier.execution_id) == []
    assert await execution_row(pool, earlier.execution_id) == before
    produced = [ResultEvent.model_validate_json(r.value) for r in await results.read_to_end()]
    assert [r.execution_id for r in produced] == [later.execution_id]


async def test_a_cancel_inside_the_lead_wins_over_the_start(
    worker: Worker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    committed: Callable[[int, int], Awaitable[None]],
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, http_target.url)
    scheduled_for = datetime.now(UTC) + timedelta(seconds=2)
    execution = await insert_execution(pool, job_id, user_id, shard, scheduled_for)

    sent = await send_due(producer, cat, due_event(execution, http_target.url))

    async def held() -> bool | None:
        return True if worker.in_flight > 0 else None

    await eventually(held, "the worker to hold the due event", timeout_s=1.5)
    await pool.execute(
        "UPDATE kjs_executions SET status = 'cancelled', finished_at = now()"
        " WHERE execution_id = $1",
        execution.execution_id,
    )
    await committed(sent.partition, sent.offset)

    assert datetime.now(UTC) >= scheduled_for  # it was held to its instant, then dropped
    assert http_target.hits_for(execution.execution_id) == []
    assert (await execution_row(pool, execution.execution_id))["status"] == "cancelled"
    assert await results.read_to_end() == []


async def test_a_poison_record_goes_to_the_dlq_and_the_partition_goes_on(
    worker: Worker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    dead_letters: TopicReader,
    committed: Callable[[int, int], Awaitable[None]],
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, http_target.url)
    execution = await insert_execution(pool, job_id, user_id, shard, datetime.now(UTC))

    poison = await producer.send_and_wait(
        cat.due["normal"].name, key=b"poison-key", value=b'{"not": "a due event"', partition=0
    )
    valid = await send_due(producer, cat, due_event(execution, http_target.url), partition=0)

    async def dead_letter() -> Any:
        for record in await dead_letters.poll():
            headers = dict(record.headers)
            if headers.get(SOURCE_OFFSET) == str(poison.offset).encode():
                return record
        return None

    letter = await eventually(dead_letter, "the poison record in the DLQ")
    assert (letter.key, letter.value) == (b"poison-key", b'{"not": "a due event"')
    assert dict(letter.headers)[REASON].startswith(b"invalid DueEvent")

    _, result = await result_for(results, execution.execution_id)
    assert result.status == "succeeded"
    await committed(0, valid.offset)


async def test_a_stopping_worker_finishes_its_in_flight_records_first(
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    committed: Callable[[int, int], Awaitable[None]],
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    running = await start_worker(drain_deadline_s=20.0)
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, http_target.url)
    execution = await insert_execution(pool, job_id, user_id, shard, datetime.now(UTC))
    http_target.gate.clear()

    sent = await send_due(producer, cat, due_event(execution, http_target.url))

    async def request_open() -> bool | None:
        return True if http_target.open_requests == 1 else None

    await eventually(request_open, "the target to be called")
    running.worker.stop()
    assert not running.task.done()
    http_target.gate.set()
    await asyncio.wait_for(running.task, timeout=15)

    _, result = await result_for(results, execution.execution_id)
    assert result.status == "succeeded"
    await committed(sent.partition, sent.offset)


async def test_a_record_cut_off_by_the_drain_deadline_is_not_committed(
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    running = await start_worker(drain_deadline_s=0.3)
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, http_target.url)
    execution = await insert_execution(pool, job_id, user_id, shard, datetime.now(UTC))
    http_target.gate.clear()

    sent = await send_due(producer, cat, due_event(execution, http_target.url))

    async def request_open() -> bool | None:
        return True if http_target.open_requests == 1 else None

    await eventually(request_open, "the target to be called")
    running.worker.stop()
    await asyncio.wait_for(running.task, timeout=15)

    # Stopped and committed: the cut-off record must be left for redelivery.
    assert await committed_offset(lane_kafka, cat, sent.partition) <= sent.offset
    assert await results.read_to_end() == []


async def test_no_more_records_run_at_once_than_the_concurrency(
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    running = await start_worker(concurrency=2, max_held=1)
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, http_target.url)
    now = datetime.now(UTC)
    executions = [
        await insert_execution(pool, job_id, user_id, shard, now + timedelta(microseconds=n))
        for n in range(5)
    ]
    http_target.gate.clear()
    for execution in executions:
        await send_due(producer, cat, due_event(execution, http_target.url))

    async def two_open() -> bool | None:
        return True if http_target.open_requests == 2 else None

    await eventually(two_open, "two requests to be open")
    # Two running and one waiting for a slot fill the lane: it is paused, so the other
    # two records are not even fetched.
    assert running.worker.in_flight == 3
    http_target.gate.set()
    for execution in executions:
        _, result = await result_for(results, execution.execution_id)
        assert result.status == "succeeded"
    assert http_target.most_open == 2


async def test_records_held_for_their_instant_take_no_slot(
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    running = await start_worker(concurrency=1)
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, http_target.url)
    instant = datetime.now(UTC) + timedelta(seconds=3)
    executions = [
        await insert_execution(pool, job_id, user_id, shard, instant + timedelta(microseconds=n))
        for n in range(3)
    ]
    for execution in executions:
        await send_due(producer, cat, due_event(execution, http_target.url))

    async def all_held() -> bool | None:
        return True if running.worker.in_flight == 3 else None

    await eventually(all_held, "all three events to be held", timeout_s=2.5)
    assert datetime.now(UTC) < instant
    for execution in executions:
        _, result = await result_for(results, execution.execution_id)
        assert result.status == "succeeded"


async def test_a_claim_waits_out_a_postgres_outage_and_then_runs(
    proxy: tuple[CuttableProxy, str],
    start_worker: StartWorker,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    link, proxied_url = proxy
    running = await start_worker(database_url=proxied_url)
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, http_target.url)
    execution = await insert_execution(pool, job_id, user_id, shard, datetime.now(UTC))

    link.sever()
    sent = await send_due(producer, cat, due_event(execution, http_target.url))

    async def retried() -> bool | None:
        return True if link.refused >= 3 else None

    await eventually(retried, "the worker to retry its claim through the outage")
    assert http_target.hits == []
    assert running.worker.in_flight == 1
    assert await committed_offset(lane_kafka, cat, sent.partition) <= sent.offset

    link.cut = False
    _, result = await result_for(results, execution.execution_id)
    assert result.status == "succeeded"
    assert len(http_target.hits_for(execution.execution_id)) == 1

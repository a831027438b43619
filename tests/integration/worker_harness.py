"""What the worker's integration tests share: fresh topics, readers, rows, a recording HTTP
target, and workers started in-process as ``kjs worker`` would run them.

Each test gets its own topic namespace, hence its own due topic and consumer group: a worker
here must never pick up due events another test (the scheduler's, say) produced, and must not
inherit another test's committed offsets. Modules import the fixtures they use by name.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from core.settings import DatabaseSettings, KafkaSettings, TargetSettings, WorkerSettings
from schemas.v1.events import DueEvent, ResultEvent, results_in
from tests.support.targets import RecordingTarget, serve_target
from tests.support.waiting import eventually
from topics.admin import create_topics
from topics.catalog import Catalog, TopicSpec, catalog
from topics.partitioner import partition_for
from topics.producer import durable_producer
from workers.main import Worker, WorkerTuning

# --- a recording HTTP target -------------------------------------------------------------


@pytest.fixture
async def http_target() -> AsyncIterator[RecordingTarget]:
    async with serve_target() as target:
        yield target


# --- Kafka: fresh topics, a producer, readers --------------------------------------------


@pytest.fixture
async def lane_kafka(services: None, kafka_settings: KafkaSettings) -> KafkaSettings:
    ns = f"{kafka_settings.namespace}w{uuid.uuid4().hex[:8]}."
    settings = kafka_settings.model_copy(update={"namespace": ns})
    await create_topics(settings, catalog(settings))
    return settings


@pytest.fixture
def cat(lane_kafka: KafkaSettings) -> Catalog:
    return catalog(lane_kafka)


@pytest.fixture
async def producer(lane_kafka: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    p = durable_producer(lane_kafka)
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

        await eventually(caught_up, what=f"reading {self.topic} to its end")
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
            for event in results_in(record.value, record.headers):
                if event.execution_id == execution_id:
                    return record, event
        return None

    return await eventually(find, what=f"the result of execution {execution_id}")


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
        async def check() -> bool | None:
            at = await group_offset(admin, cat, partition)
            return True if at > offset else None

        await eventually(check, what=f"the worker group to commit past {partition}@{offset}")

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


def due_event(
    execution: Execution,
    url: str = "http://127.0.0.1:9/unused",
    *,
    target: dict[str, Any] | None = None,
    not_before: datetime | None = None,
) -> DueEvent:
    """The due event the scheduler would produce; an HTTP target to ``url`` by default."""
    return DueEvent.model_validate(
        {
            "execution_id": execution.execution_id,
            "job_id": execution.job_id,
            "user_id": execution.user_id,
            "attempt": 1,
            "scheduled_for": execution.scheduled_for,
            "lane": "normal",
            "target": target or {"type": "http", "method": "POST", "url": url, "body": {"n": 1}},
            "shard": execution.shard,
            "not_before": not_before,
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


# --- the worker ---------------------------------------------------------------------------

LOCAL_TARGETS = TargetSettings(http_allowlist=["127.0.0.1"])


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
        # The local targets run on 127.0.0.1, which the SSRF guard refuses unless allowed.
        targets: TargetSettings = LOCAL_TARGETS,
        tuning: WorkerTuning = WorkerTuning(),  # noqa: B008 (frozen)
        retention_days: float = 0,
    ) -> RunningWorker:
        w = Worker(
            lane_kafka,
            DatabaseSettings(database_url=SecretStr(database_url)),
            WorkerSettings(
                worker_id=f"test-worker-{uuid.uuid4().hex[:6]}",
                worker_concurrency=concurrency,
                worker_drain_s=drain_deadline_s,
                worker_max_held=max_held,
                execution_retention_days=retention_days,
            ),
            "normal",
            targets,
            tuning=tuning,
        )
        running = RunningWorker(w, asyncio.create_task(w.run()))
        started.append(running)

        async def assigned() -> bool | None:
            if running.task.done():
                running.task.result()  # surfaces a start-up failure instead of a timeout
            return True if w.assigned.is_set() else None

        await eventually(assigned, what="the worker to be assigned its partitions")
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

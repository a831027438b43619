"""A lane worker against the real broker and Postgres: timing, claims, offsets, shutdown."""

# The harness's fixtures are imported by name, which pyflakes reads as unused imports and
# their parameters as redefinitions.
# ruff: noqa: F401, F811

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from core.settings import KafkaSettings
from schemas.v1.events import KIND_HEADER, RESULT_BATCH_KIND, results_in
from tests.integration.worker_harness import (
    StartWorker,
    TopicReader,
    cat,
    committed,
    committed_offset,
    dead_letters,
    due_event,
    execution_row,
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
    worker,
)
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually
from topics.catalog import Catalog
from topics.dlq import REASON, SOURCE_OFFSET
from topics.partitioner import partition_for
from workers.execution import CLAIM_AHEAD_S
from workers.main import Worker

pytestmark = pytest.mark.services


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


# --- tests ---


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
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    # Well beyond the time the event takes to reach the worker: it has to hold it.
    scheduled_for = datetime.now(UTC) + timedelta(milliseconds=800)
    execution = await insert_execution(pool, job_id, user_id, shard, scheduled_for)

    await send_due(producer, cat, due_event(execution, http_target.url()))
    record, result = await result_for(results, execution.execution_id)

    (hit,) = http_target.hits_for(execution.execution_id)
    assert hit.at >= scheduled_for
    assert hit.body == b'{"n": 1}'
    # In a batch (workers.reports) on the partition of the user's commands: its shard's.
    assert record.partition == partition_for(user_id.encode(), cat.results.partitions)
    assert (KIND_HEADER, RESULT_BATCH_KIND) in record.headers
    assert result.status == "succeeded"
    assert result.http_status == 200
    assert result.output_excerpt == '{"ok": true}'  # what the target answered
    assert (result.worker, result.job_id, result.user_id, result.attempt) == (
        worker.id,
        job_id,
        user_id,
        1,
    )
    assert scheduled_for <= result.started_at <= hit.at <= result.finished_at
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
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    now = datetime.now(UTC)
    earlier = await insert_execution(pool, job_id, user_id, shard, now, status=status)
    before = await execution_row(pool, earlier.execution_id)
    later = await insert_execution(pool, job_id, user_id, shard, now + timedelta(seconds=1))

    # Same job, same key, same partition: the later record's commit covers the earlier one.
    await send_due(producer, cat, due_event(earlier, http_target.url()))
    marker = await send_due(producer, cat, due_event(later, http_target.url()))
    await result_for(results, later.execution_id)
    await committed(marker.partition, marker.offset)

    assert len(http_target.hits_for(later.execution_id)) == 1
    assert http_target.hits_for(earlier.execution_id) == []
    assert await execution_row(pool, earlier.execution_id) == before
    produced = [e for r in await results.read_to_end() for e in results_in(r.value, r.headers)]
    assert [r.execution_id for r in produced] == [later.execution_id]


async def test_a_cancel_inside_the_lead_before_the_claim_wins_over_the_start(
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
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    scheduled_for = datetime.now(UTC) + timedelta(seconds=CLAIM_AHEAD_S + 2)
    execution = await insert_execution(pool, job_id, user_id, shard, scheduled_for)

    sent = await send_due(producer, cat, due_event(execution, http_target.url()))

    async def held() -> bool | None:
        return True if worker.in_flight > 0 else None

    await eventually(held, what="the worker to hold the due event", timeout_s=1.5)
    await pool.execute(
        "UPDATE kjs_executions SET status = 'cancelled', finished_at = now()"
        " WHERE execution_id = $1",
        execution.execution_id,
    )
    await committed(sent.partition, sent.offset)

    # It was held to its claim, a second before its instant, and dropped there.
    assert datetime.now(UTC) >= scheduled_for - timedelta(seconds=CLAIM_AHEAD_S)
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
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    execution = await insert_execution(pool, job_id, user_id, shard, datetime.now(UTC))

    poison = await producer.send_and_wait(
        cat.due["normal"].name, key=b"poison-key", value=b'{"not": "a due event"', partition=0
    )
    valid = await send_due(producer, cat, due_event(execution, http_target.url()), partition=0)

    async def dead_letter() -> Any:
        for record in await dead_letters.poll():
            headers = dict(record.headers)
            if headers.get(SOURCE_OFFSET) == str(poison.offset).encode():
                return record
        return None

    letter = await eventually(dead_letter, what="the poison record in the DLQ")
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
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    execution = await insert_execution(pool, job_id, user_id, shard, datetime.now(UTC))
    http_target.gate.clear()

    sent = await send_due(producer, cat, due_event(execution, http_target.url()))

    async def request_open() -> bool | None:
        return True if http_target.open_requests == 1 else None

    await eventually(request_open, what="the target to be called")
    running.worker.stop()
    assert not running.task.done()
    http_target.gate.set()
    await asyncio.wait_for(running.task, timeout=15)

    _, result = await result_for(results, execution.execution_id)
    assert result.status == "succeeded"
    await committed(sent.partition, sent.offset)


async def test_a_record_cut_off_by_the_drain_deadline_is_reported_interrupted_not_committed(
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
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    execution = await insert_execution(pool, job_id, user_id, shard, datetime.now(UTC))
    http_target.gate.clear()

    sent = await send_due(producer, cat, due_event(execution, http_target.url()))

    async def request_open() -> bool | None:
        return True if http_target.open_requests == 1 else None

    await eventually(request_open, what="the target to be called")
    running.worker.stop()
    await asyncio.wait_for(running.task, timeout=15)

    # Stopped and committed: the cut-off record must be left for redelivery...
    assert await committed_offset(lane_kafka, cat, sent.partition) <= sent.offset
    # ...and its attempt reported as interrupted, so the shard retries it without waiting
    # for the lease to lapse.
    produced = [e for r in await results.read_to_end() for e in results_in(r.value, r.headers)]
    assert [(r.execution_id, r.status, r.retryable) for r in produced] == [
        (execution.execution_id, "failed", True)
    ]
    assert produced[0].error is not None and produced[0].error.startswith("interrupted")


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
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    now = datetime.now(UTC)
    executions = [
        await insert_execution(pool, job_id, user_id, shard, now + timedelta(microseconds=n))
        for n in range(5)
    ]
    http_target.gate.clear()
    for execution in executions:
        await send_due(producer, cat, due_event(execution, http_target.url()))

    async def two_open() -> bool | None:
        return True if http_target.open_requests == 2 else None

    await eventually(two_open, what="two requests to be open")
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
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    instant = datetime.now(UTC) + timedelta(seconds=3)
    executions = [
        await insert_execution(pool, job_id, user_id, shard, instant + timedelta(microseconds=n))
        for n in range(3)
    ]
    for execution in executions:
        await send_due(producer, cat, due_event(execution, http_target.url()))

    async def all_held() -> bool | None:
        return True if running.worker.in_flight == 3 else None

    await eventually(all_held, what="all three events to be held", timeout_s=2.5)
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
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    execution = await insert_execution(pool, job_id, user_id, shard, datetime.now(UTC))

    link.sever()
    sent = await send_due(producer, cat, due_event(execution, http_target.url()))

    async def retried() -> bool | None:
        return True if link.refused >= 3 else None

    await eventually(retried, what="the worker to retry its claim through the outage")
    assert http_target.hits == []
    assert running.worker.in_flight == 1
    assert await committed_offset(lane_kafka, cat, sent.partition) <= sent.offset

    link.cut = False
    _, result = await result_for(results, execution.execution_id)
    assert result.status == "succeeded"
    assert len(http_target.hits_for(execution.execution_id)) == 1

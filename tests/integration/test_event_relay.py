"""The events outbox on the real Postgres and Kafka: a change that rolls back leaves no event,
off writes none, and the shard's relay is fenced (a stale owner publishes nothing) and
batched (a batch is published and deleted together)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from core.settings import KafkaSettings
from scheduler.events import relay_once
from scheduler.kafka_io import ProducerSender
from scheduler.model import Failure, NewJob
from scheduler.store.events import SWITCH, job_change
from scheduler.store.jobs import insert_jobs
from scheduler.store.lifecycle import cancel_job, change_job, trigger_job
from scheduler.store.pending import queue_pending
from scheduler.store.results import record_result
from scheduler.store.shards import Fenced, claim_shard
from schemas.v1.events import ResultEvent
from schemas.v1.state_events import StateEvent
from schemas.v1.statuses import ALLOWED_FROM
from tests.integration.test_outbox import fire
from tests.integration.worker_harness import TopicReader
from topics.catalog import Catalog, catalog

pytestmark = pytest.mark.services


@pytest.fixture
def events_on() -> Iterator[None]:
    SWITCH.on = True
    try:
        yield
    finally:
        SWITCH.on = False


@pytest.fixture
def own_catalog(own_topics: KafkaSettings) -> Catalog:
    """An events topic nobody else writes, so every record in it is this test's."""
    return catalog(own_topics)


async def outbox(pool: asyncpg.Pool, shard: int) -> list[StateEvent]:
    rows = await pool.fetch(
        "SELECT payload::text AS p FROM kjs_event_outbox WHERE shard = $1 ORDER BY seq", shard
    )
    return [StateEvent.model_validate_json(r["p"]) for r in rows]


async def published(bootstrap: str, cat: Catalog) -> list[StateEvent]:
    reader = TopicReader(bootstrap, cat.events)
    await reader.start()
    try:
        return [StateEvent.model_validate_json(r.value) for r in await reader.read_to_end()]
    finally:
        await reader.stop()


def failed(execution_id: uuid.UUID, job_id: uuid.UUID, user_id: str) -> ResultEvent:
    now = datetime.now(UTC)
    return ResultEvent(
        execution_id=execution_id,
        job_id=job_id,
        user_id=user_id,
        attempt=1,
        status="failed",
        started_at=now - timedelta(seconds=1),
        finished_at=now,
        worker="w-test",
        http_status=400,
        error="bad request",
    )


async def test_a_rolled_back_change_leaves_no_event_and_a_committed_one_has_all(
    pool: asyncpg.Pool, shard: int, user_id: str, events_on: None
) -> None:
    epoch = await claim_shard(pool, shard, "owner")
    (occ,) = await fire(pool, shard, epoch, user_id, 1)
    before = [e.type for e in await outbox(pool, shard)]
    assert before == ["job.created", "execution.queued"]

    async def dead_letter_fails(failure: Failure) -> None:
        raise RuntimeError("the DLQ did not answer")

    result = failed(occ.execution_id, occ.job_id, user_id)
    with pytest.raises(RuntimeError):
        await record_result(
            pool, shard, epoch, result, lambda _: None, dead_letter_fails, datetime.now(UTC)
        )
    assert [e.type for e in await outbox(pool, shard)] == before, "a rolled-back change"

    async def dead_letter(failure: Failure) -> None:
        return None

    await record_result(pool, shard, epoch, result, lambda _: None, dead_letter, datetime.now(UTC))
    events = await outbox(pool, shard)
    assert [e.type for e in events] == [
        *before,
        "execution.failed",
        "execution.dead_lettered",
        "job.finished",
    ]
    assert events[2].execution is not None and events[2].execution.error == "bad request"
    assert events[-1].job is not None and events[-1].job.status == "failed"
    # A redelivered result changes nothing, so it has no event either.
    await record_result(pool, shard, epoch, result, lambda _: None, dead_letter, datetime.now(UTC))
    assert len(await outbox(pool, shard)) == len(events)


async def test_off_writes_no_event(pool: asyncpg.Pool, shard: int, user_id: str) -> None:
    assert not SWITCH.on
    epoch = await claim_shard(pool, shard, "owner")
    await fire(pool, shard, epoch, user_id, 3)
    assert await outbox(pool, shard) == []


async def test_the_relay_is_fenced_and_publishes_in_batches(
    pool: asyncpg.Pool,
    shard: int,
    user_id: str,
    events_on: None,
    own_catalog: Catalog,
    sender: ProducerSender,
    kafka_settings: KafkaSettings,
) -> None:
    old = await claim_shard(pool, shard, "old-owner")
    await fire(pool, shard, old, user_id, 3)  # 3 created + 3 queued
    written = await outbox(pool, shard)
    assert len(written) == 6
    topic = own_catalog.events.name

    new = await claim_shard(pool, shard, "new-owner")
    with pytest.raises(Fenced):
        await relay_once(pool, sender, topic, shard, old, 1000)
    bootstrap = kafka_settings.kafka_bootstrap
    assert await published(bootstrap, own_catalog) == [], "a fenced-out relay published"
    assert await outbox(pool, shard) == written

    assert await relay_once(pool, sender, topic, shard, new, 4) == 4
    assert await outbox(pool, shard) == written[4:]
    assert await relay_once(pool, sender, topic, shard, new, 4) == 2
    assert await relay_once(pool, sender, topic, shard, new, 4) == 0
    sent = await published(bootstrap, own_catalog)
    assert sorted(e.event_id for e in sent) == sorted(e.event_id for e in written)
    # Key job_id: one job's events share a partition, so they keep their order.
    for job_id in {e.job_id for e in written}:
        assert [e.type for e in sent if e.job_id == job_id] == ["job.created", "execution.queued"]


@pytest.mark.parametrize(
    ("before", "after", "event"),
    [
        ("scheduled", "paused", "job.paused"),
        ("paused", "scheduled", "job.resumed"),
        ("scheduled", "scheduled", "job.updated"),
        ("paused", "paused", "job.updated"),
    ],
)
def test_a_lifecycle_change_is_named_by_its_statuses(before: str, after: str, event: str) -> None:
    assert job_change(before, after) == event


async def test_each_lifecycle_change_has_its_event(
    pool: asyncpg.Pool, shard: int, user_id: str, events_on: None
) -> None:
    epoch = await claim_shard(pool, shard, "owner")
    now = datetime.now(UTC)
    job = NewJob(
        job_id=uuid.uuid4(),
        user_id=user_id,
        shard=shard,
        name="lifecycle",
        idempotency_key=None,
        schedule={"type": "cron", "expression": "0 9 * * *"},
        target={"type": "http", "method": "GET", "url": "https://example.com"},
        priority="normal",
        retry={},
        next_run_at=now + timedelta(days=1),
        created_at=now,
        source="test",
    )
    jid = job.job_id

    async def change(command: str, **values: object) -> None:
        changed = await change_job(
            pool, shard, epoch, user_id, jid, ALLOWED_FROM[command], lambda _: values, now
        )
        assert not isinstance(changed, str), changed

    await insert_jobs(pool, shard, epoch, [job])
    await insert_jobs(pool, shard, epoch, [job])  # a redelivered create: no change, no event
    await change("pause", status="paused")
    await change("resume", status="scheduled")
    await change("update", name="renamed")
    # A run triggered for later than the pause below: fired ahead, not yet due.
    run = await trigger_job(pool, shard, epoch, user_id, jid, now + timedelta(seconds=10))
    assert not isinstance(run, str)
    await queue_pending(pool, shard, epoch, [run.execution_id], now + timedelta(seconds=10))
    await change("pause", status="paused")
    assert await cancel_job(pool, shard, epoch, user_id, jid) == "cancelled"

    events = await outbox(pool, shard)
    assert [e.type for e in events] == [
        "job.created",
        "job.paused",
        "job.resumed",
        "job.updated",
        "execution.pending",
        "execution.queued",
        "job.paused",
        "execution.skipped",
        "job.cancelled",
    ]
    assert events[3].job is not None and events[3].job.name == "renamed"
    skipped = events[7].execution
    assert skipped is not None and skipped.reason and skipped.reason.startswith("paused")

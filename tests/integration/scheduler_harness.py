"""A shard of the scheduler, in-process, on a clock the test steps.

The real pieces on the real Postgres and Kafka: ``Shards`` claims a shard of the test's own
(its epoch bumped, its ``ShardTimer`` started), a ``Dispatcher`` produces the due events to a
topic namespace of the test's own, and the command and result handlers can be built on the
same shards. Every "now" of theirs is a ``SteppedClock``, which only moves when the test says
so; a test reads as a timetable::

    async with shard_harness(pool, kafka_settings, start=utc(DAY, "08:59:00")) as h:
        job = await h.add_job(user_id, {"type": "cron", "expression": "0 9 * * *"})
        await h.at(utc(DAY, "08:59:56.9"))  # the timer has done all it would do by then
        assert await h.executions(job) == []
        await h.at(utc(DAY, "08:59:57"))  # the 3 s lead before 09:00
        assert len(await h.executions(job)) == 1

``at`` waits for the timer, not for time: it sets the clock, wakes the timer, and returns
once the timer has looked at the new time and found nothing more due (``ShardTimer.idle_at``),
so everything due by then is fired and committed. ``reaped`` does the same for the lease
reaper (``ShardTimer.reaped_at``), which looks once a second of real time. Due events reach
Kafka in the background of a fire: wait for them with ``eventually``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaProducer

from core.settings import KafkaSettings, SchedulerSettings
from scheduler.daily_budget import DailyBudget
from scheduler.firing import SCHEDULE, Dispatcher, effective_due, fires_close
from scheduler.kafka_io import ProducerSender
from scheduler.model import NewJob
from scheduler.shards import Shards
from scheduler.store.jobs import insert_job
from scheduler.timer import ShardTimer
from schemas.v1.events import DueEvent
from tests.support.waiting import eventually
from timetable.occurrences import first_run
from topics.admin import create_topics
from topics.catalog import Catalog, catalog
from topics.producer import durable_producer


def utc(day: str, time: str) -> datetime:
    """``utc("2030-01-07", "08:59:56.9")``: an instant, in UTC."""
    return datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=UTC)


class SteppedClock:
    """A ``core.clock.Clock`` that stands still until set; it never goes back."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, when: datetime) -> None:
        assert when >= self.now, f"the clock goes forward only ({self.now} -> {when})"
        self.now = when


class RecordingSender(ProducerSender):
    """Produces like the scheduler's sender, and keeps each due event Kafka acknowledged."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        super().__init__(producer)
        self.acked: list[DueEvent] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]:
        ack = await super().send(topic, key, value, partition=partition, headers=headers)

        async def acked() -> Any:
            meta = await ack
            self.acked.append(DueEvent.model_validate_json(value or b""))
            return meta

        return acked()


@dataclass
class ShardHarness:
    pool: asyncpg.Pool
    shard: int
    clock: SteppedClock
    shards: Shards
    dispatcher: Dispatcher
    sender: RecordingSender
    catalog: Catalog
    settings: SchedulerSettings
    jobs: list[UUID] = field(default_factory=list)

    @property
    def timer(self) -> ShardTimer:
        return self.shards.owned[self.shard].timer

    @property
    def epoch(self) -> int:
        return self.timer.epoch

    async def add_job(
        self,
        user_id: str,
        schedule: dict[str, Any],
        *,
        retry: dict[str, Any] | None = None,
        priority: str = "normal",
        concurrency: dict[str, Any] | None = None,
    ) -> UUID:
        """Store a job created now (the clock's now), as the command handler would, and
        offer it to the timer; returns its id. The target is a Kafka topic nobody reads."""
        now = self.clock()
        parsed = SCHEDULE.validate_python(schedule)
        first = first_run(parsed, now, anchor=now)
        assert first is not None, f"{schedule} has no occurrence after {now}"
        row = NewJob(
            job_id=uuid.uuid4(),
            user_id=user_id,
            shard=self.shard,
            name="harness",
            idempotency_key=None,
            schedule=parsed.model_dump(mode="json"),
            target={"type": "kafka", "topic": "nowhere", "value": None},
            priority=priority,
            retry=retry or {},
            next_run_at=first,
            created_at=now,
            source="test",
            concurrency=concurrency,
        )
        assert await insert_job(self.pool, self.epoch, row)
        self.timer.offer(
            row.job_id, effective_due(parsed, row.job_id, first), close=fires_close(row.schedule)
        )
        self.jobs.append(row.job_id)
        return row.job_id

    async def at(self, when: datetime, timeout_s: float = 10.0) -> None:
        """Set the clock to ``when``; return once the timer has fired all that is due by
        then (its rows committed; their due events may still be on their way)."""
        self.clock.set(when)
        self.timer.wake()

        async def looked() -> bool:
            return self.timer.idle_at is not None and self.timer.idle_at >= when

        await eventually(looked, timeout_s=timeout_s, what=f"the timer to look at {when}")

    async def reaped(self, timeout_s: float = 10.0) -> None:
        """Return once the lease reaper has looked at the clock's time (it looks once a
        second): every lease lapsed by then is re-queued and dispatched."""
        when = self.clock()

        async def looked() -> bool:
            return self.timer.reaped_at is not None and self.timer.reaped_at >= when

        await eventually(looked, timeout_s=timeout_s, what=f"the reaper to look at {when}")

    async def advance(self, **delta: float) -> datetime:
        """``await h.advance(seconds=3)``: ``at`` the clock's time plus a ``timedelta``."""
        when = self.clock() + timedelta(**delta)
        await self.at(when)
        return when

    async def executions(self, job_id: UUID) -> list[asyncpg.Record]:
        """The job's executions, oldest occurrence and attempt first."""
        rows: list[asyncpg.Record] = await self.pool.fetch(
            "SELECT execution_id, scheduled_for, attempt, status, due_at, worker, lease_until"
            " FROM kjs_executions WHERE job_id = $1 ORDER BY scheduled_for, attempt",
            job_id,
        )
        return rows

    async def job(self, job_id: UUID) -> asyncpg.Record:
        row: asyncpg.Record = await self.pool.fetchrow(
            "SELECT status, next_run_at FROM kjs_jobs WHERE job_id = $1", job_id
        )
        return row

    def due_events(self, job_id: UUID) -> list[DueEvent]:
        """The due events of the job that Kafka acknowledged, in order."""
        return [e for e in self.sender.acked if e.job_id == job_id]

    async def claimed(
        self, execution_id: UUID, lease_until: datetime, worker: str = "w-harness"
    ) -> None:
        """The execution as a worker's claim leaves it: running, leased until
        ``lease_until`` (on the test's clock, which the worker's claim would read)."""
        moved = await self.pool.execute(
            "UPDATE kjs_executions SET status = 'running', worker = $2, started_at = $3,"
            " lease_until = $4 WHERE execution_id = $1 AND status = 'queued'",
            execution_id,
            worker,
            self.clock(),
            lease_until,
        )
        assert moved == "UPDATE 1", f"{execution_id} was not queued"


@asynccontextmanager
async def shard_harness(
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    start: datetime,
    settings: SchedulerSettings | None = None,
    budget: DailyBudget | None = None,
) -> AsyncIterator[ShardHarness]:
    """A shard of the test's own (a fresh shard number and topic namespace), owned by a
    ``Shards`` whose timer, dispatcher and handlers read ``SteppedClock(start)``."""
    settings = settings or SchedulerSettings()
    kafka = kafka_settings.model_copy(
        update={"namespace": f"{kafka_settings.namespace}s{uuid.uuid4().hex[:8]}."}
    )
    cat = catalog(kafka)
    await create_topics(kafka, cat)
    clock = SteppedClock(start)
    producer = durable_producer(kafka)
    await producer.start()
    try:
        sender = RecordingSender(producer)
        dispatcher = Dispatcher(pool, sender, cat, clock)
        shard = 4000 + uuid.uuid4().int % 1_000_000
        shards = Shards(pool, dispatcher, settings, f"harness-{shard}", budget, clock=clock)
        await shards.assign([shard])
        try:
            yield ShardHarness(pool, shard, clock, shards, dispatcher, sender, cat, settings)
        finally:
            await shards.stop()
    finally:
        await producer.stop()

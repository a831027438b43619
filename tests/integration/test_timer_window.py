"""A shard's timer holds only the jobs due within its window (invariant 4)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from core.settings import SchedulerSettings
from scheduler.firing import Dispatcher
from scheduler.kafka_io import ProducerSender
from scheduler.model import NewJob
from scheduler.store.jobs import insert_job
from scheduler.store.shards import claim_shard
from scheduler.timer import ShardTimer
from tests.support.waiting import eventually
from topics.catalog import Catalog
from topics.producer import durable_producer

pytestmark = pytest.mark.services


@pytest.fixture
async def sender(topic_catalog: Catalog) -> AsyncIterator[ProducerSender]:
    from core.settings import KafkaSettings

    producer = durable_producer(KafkaSettings())
    await producer.start()
    yield ProducerSender(producer)
    await producer.stop()


def job_row(shard: int, user_id: str, at: datetime) -> NewJob:
    return NewJob(
        job_id=uuid.uuid4(),
        user_id=user_id,
        shard=shard,
        name="window",
        idempotency_key=None,
        schedule={"type": "once", "at": at.isoformat()},
        target={"type": "kafka", "topic": "nowhere", "value": None},
        priority="low",
        retry={},
        next_run_at=at,
        created_at=datetime.now(UTC),
        source="test",
    )


async def test_far_jobs_stay_in_postgres_until_their_window_comes(
    pool: asyncpg.Pool, topic_catalog: Catalog, sender: ProducerSender, user_id: str
) -> None:
    shard = 2000 + uuid.uuid4().int % 1_000_000
    epoch = await claim_shard(pool, shard, "window-test")
    now = datetime.now(UTC)
    near = job_row(shard, user_id, now + timedelta(seconds=1))
    far = [job_row(shard, user_id, now + timedelta(seconds=4 + i * 0.01)) for i in range(50)]
    for job in [near, *far]:
        await insert_job(pool, epoch, job)

    settings = SchedulerSettings(window_s=2.0, lead_ms=100)
    timer = ShardTimer(shard, epoch, pool, Dispatcher(pool, sender, topic_catalog), settings)
    task = asyncio.create_task(timer.run())
    try:
        await eventually(lambda: _status(pool, near.job_id, "queued"), what="the near job")
        # The far ones are beyond the 2 s horizon: not held, not fired.
        assert timer.held <= 1, f"{timer.held} jobs in memory beyond the window"
        assert await _count_status(pool, [j.job_id for j in far], "scheduled") == len(far)

        async def all_fired() -> bool:
            return await _count_status(pool, [j.job_id for j in far], "queued") == len(far)

        await eventually(all_fired, timeout_s=20, what="the far jobs to fire when due")

        async def all_dispatched() -> bool:
            # Marked once Kafka acknowledged the due events, just after the fire's commit.
            fired = await pool.fetch(
                "SELECT dispatched_at FROM kjs_executions WHERE job_id = ANY($1::uuid[])",
                [j.job_id for j in far],
            )
            return len(fired) == len(far) and all(r["dispatched_at"] is not None for r in fired)

        await eventually(all_dispatched, timeout_s=10, what="their due events to be acknowledged")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _status(pool: asyncpg.Pool, job_id: uuid.UUID, status: str) -> bool:
    return bool(
        await pool.fetchval("SELECT status = $2 FROM kjs_jobs WHERE job_id = $1", job_id, status)
    )


async def _count_status(pool: asyncpg.Pool, job_ids: list[uuid.UUID], status: str) -> int:
    n: int = await pool.fetchval(
        "SELECT count(*) FROM kjs_jobs WHERE job_id = ANY($1::uuid[]) AND status = $2",
        job_ids,
        status,
    )
    return n

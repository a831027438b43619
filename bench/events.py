"""What ``KJS_EVENTS=on`` costs the firing path, and how fast a shard's relay publishes.

    .venv/bin/python -m bench.events --jobs 10000 --rounds 3

1. Firing: ``--jobs`` one-time jobs due now on one shard are fired with ``fire_due`` in
   batches of 1,000 (the timer's batch), events off, then the same number with events on
   (one more statement per batch: the outbox rows of the fired executions); ``--rounds``
   times, alternating, on a fresh database. Prints the median time per batch of each.
2. Relay: the outbox the "on" rounds filled (a created and a queued event per job) is
   published by ``relay_once`` (1,000 a batch: one produce flush, one delete) to a
   ``jobs.events`` of its own; prints events per second.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

from bench.databases import fresh_database
from core.db import create_pool
from core.settings import DatabaseSettings, KafkaSettings
from scheduler.events import RELAY_BATCH, relay_once
from scheduler.firing import plan
from scheduler.kafka_io import ProducerSender
from scheduler.model import NewJob
from scheduler.store.events import SWITCH
from scheduler.store.firing import fire_due
from scheduler.store.jobs import insert_jobs
from scheduler.store.shards import claim_shard
from topics.admin import create_topics
from topics.catalog import catalog
from topics.producer import durable_producer

BATCH = 1000
SHARD = 0


def new_jobs(n: int, now: datetime) -> list[NewJob]:
    at = now + timedelta(seconds=1)
    return [
        NewJob(
            job_id=uuid.uuid4(),
            user_id=f"u{i % 100}",
            shard=SHARD,
            name=f"bench-{i}",
            idempotency_key=None,
            schedule={"type": "once", "at": at.isoformat()},
            target={"type": "kafka", "topic": "bench.sink", "value": None},
            priority="normal",
            retry={},
            next_run_at=at,
            created_at=now,
            source="bench",
        )
        for i in range(n)
    ]


async def main(jobs: int, rounds: int) -> None:
    dsn = await fresh_database("events")
    pool = await create_pool(DatabaseSettings(), dsn=dsn)
    epoch = await claim_shard(pool, SHARD, "bench")
    per_batch: dict[bool, list[float]] = {False: [], True: []}
    try:
        for _ in range(rounds):
            for on in (False, True):
                SWITCH.on = on
                now = datetime.now(UTC)
                batch = new_jobs(jobs, now)
                for i in range(0, jobs, BATCH):
                    await insert_jobs(pool, SHARD, epoch, batch[i : i + BATCH])
                until = now + timedelta(seconds=5)
                for i in range(0, jobs, BATCH):
                    ids = [j.job_id for j in batch[i : i + BATCH]]
                    t0 = time.perf_counter()
                    await fire_due(pool, SHARD, epoch, ids, until, partial(plan, now=until))
                    per_batch[on].append(time.perf_counter() - t0)
        SWITCH.on = False
        off, on_ = (statistics.median(per_batch[k]) * 1000 for k in (False, True))
        print(f"fire_due, batch of {BATCH}: events off {off:.1f} ms, on {on_:.1f} ms (median)")

        kafka = KafkaSettings(namespace=f"bench{uuid.uuid4().hex[:6]}.")
        cat = catalog(kafka)
        await create_topics(kafka, cat)
        producer = durable_producer(kafka)
        await producer.start()
        try:
            sender = ProducerSender(producer)
            queued = await pool.fetchval("SELECT count(*) FROM kjs_event_outbox")
            t0 = time.perf_counter()
            while await relay_once(pool, sender, cat.events.name, SHARD, epoch, RELAY_BATCH):
                pass
            took = time.perf_counter() - t0
        finally:
            await producer.stop()
        print(f"relay: {queued} events in {took:.2f} s = {queued / took:,.0f} events/s")
    finally:
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.rounds))

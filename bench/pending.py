"""Scheduler memory with many pending jobs, and firing throughput from Postgres to Kafka.

    .venv/bin/python -m bench.pending --pending 1000000 --fire 20000

1. Memory: a fresh database gets ``--pending`` one-time jobs spread over the next year
   (COPY), all on the shards of one scheduler; the scheduler's resident memory once it owns
   its shards and has loaded its window is compared with the same scheduler on an empty
   database. The window (30 s) bounds what is held, so the two should be close.
2. Firing throughput: ``--fire`` jobs due now on one shard are fired by a shard timer in
   this process (fenced write of the execution rows, due events produced and acknowledged,
   rows marked dispatched); prints jobs fired per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.databases import fresh_database
from core.db import create_pool
from core.settings import DatabaseSettings, InfraSettings, KafkaSettings, SchedulerSettings
from infra.supervisor import up
from scheduler.firing import Dispatcher
from scheduler.kafka_io import ProducerSender
from scheduler.store.shards import claim_shard
from scheduler.timer import ShardTimer
from topics.admin import create_topics
from topics.catalog import Catalog, catalog
from topics.partitioner import partition_for
from topics.producer import durable_producer


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def copy_jobs(dsn: str, n: int, partitions: int, start: datetime, span_s: float) -> None:
    conn = await asyncpg.connect(dsn)
    target = json.dumps({"type": "kafka", "topic": "bench.sink", "value": None})
    rows = []
    for i in range(n):
        user = f"u{i % 10_000}"
        at = start + timedelta(seconds=span_s * i / max(1, n))
        rows.append(
            (
                uuid.uuid4(),
                user,
                partition_for(user.encode(), partitions),
                "bench",
                json.dumps({"type": "once", "at": at.isoformat()}),
                target,
                "low",
                "{}",
                "scheduled",
                at,
                "bench",
            )
        )
    await conn.copy_records_to_table(
        "kjs_jobs",
        records=rows,
        columns=[
            "job_id",
            "user_id",
            "shard",
            "name",
            "schedule",
            "target",
            "priority",
            "retry",
            "status",
            "next_run_at",
            "source",
        ],
    )
    await conn.close()


async def scheduler_rss(dsn: str, kafka: KafkaSettings, settle_s: float) -> float:
    env = {**os.environ, "KJS_DATABASE_URL": dsn, "KJS_NAMESPACE": kafka.namespace}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kjs.cli", "--loglevel", "warning", "scheduler", env=env
    )
    pool = await asyncpg.create_pool(dsn)
    assert pool is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await pool.fetchval("SELECT count(*) FROM kjs_shards") == kafka.command_partitions:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(settle_s)  # let every shard's first window load finish
    rss = rss_mib(proc.pid)
    proc.terminate()
    await proc.wait()
    await pool.close()
    return rss


async def memory(args: argparse.Namespace) -> None:
    for label, n in (("empty", 0), (f"{args.pending:,} pending", args.pending)):
        kafka = KafkaSettings(namespace=f"benchmem{uuid.uuid4().hex[:6]}.")
        await create_topics(kafka, catalog(kafka))
        dsn = await fresh_database("mem")
        t0 = time.monotonic()
        start = datetime.now(UTC) + timedelta(minutes=5)
        await copy_jobs(dsn, n, kafka.command_partitions, start, 365 * 86400)
        loaded = time.monotonic() - t0
        rss = await scheduler_rss(dsn, kafka, settle_s=5)
        print(f"scheduler RSS, {label}: {rss:.0f} MiB (rows copied in {loaded:.1f}s)")


async def firing(args: argparse.Namespace) -> None:
    kafka = KafkaSettings(namespace=f"benchfire{uuid.uuid4().hex[:6]}.", command_partitions=1)
    cat: Catalog = catalog(kafka)
    await create_topics(kafka, cat)
    dsn = await fresh_database("fire")
    pool = await create_pool(DatabaseSettings(db_pool_max=8), dsn=dsn)
    epoch = await claim_shard(pool, 0, "bench")
    await copy_jobs(dsn, args.fire, 1, datetime.now(UTC), 0)
    producer = durable_producer(kafka, linger_ms=5)
    await producer.start()

    sender = ProducerSender(producer)
    timer = ShardTimer(0, epoch, pool, Dispatcher(pool, sender, cat), SchedulerSettings())
    t0 = time.monotonic()
    task = asyncio.create_task(timer.run())
    sql = "SELECT count(*) FROM kjs_executions WHERE dispatched_at IS NOT NULL"
    while True:  # poll the store: the timer runs in this process but reports nothing
        if await pool.fetchval(sql) >= args.fire:
            break
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - t0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await producer.stop()
    await pool.close()
    print(
        f"firing throughput: {args.fire:,} jobs fired and acknowledged in {elapsed:.2f}s "
        f"= {args.fire / elapsed:,.0f} jobs/s (one shard)"
    )


async def main(args: argparse.Namespace) -> None:
    await up(InfraSettings())
    if args.fire:
        await firing(args)
    if args.pending:
        await memory(args)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pending", type=int, default=1_000_000)
    p.add_argument("--fire", type=int, default=20_000)
    asyncio.run(main(p.parse_args()))

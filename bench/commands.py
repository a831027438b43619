"""Create-command throughput: how fast one scheduler applies ``jobs.commands`` to Postgres.

    .venv/bin/python -m bench.commands --jobs 30000

Starts the local services, a fresh database and topic namespace and one ``kjs scheduler``;
produces ``--jobs`` create commands (one-time jobs due in an hour, so nothing fires) as fast as
the producer goes, then prints how long the scheduler took to store them all, and its rate.
This is the stage that bounds a sustained submission rate (README "Performance").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.databases import fresh_database
from bench.lateness import _submit
from core.settings import InfraSettings, KafkaSettings
from infra.supervisor import up
from topics.admin import create_topics
from topics.catalog import catalog


async def _stored(pool: asyncpg.Pool, n: int, deadline_s: float) -> float:
    """Seconds until ``n`` jobs are stored (polled every 50 ms)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        if await pool.fetchval("SELECT count(*) FROM kjs_jobs") >= n:
            return time.monotonic() - t0
        await asyncio.sleep(0.05)
    raise SystemExit(f"not all {n} jobs stored in {deadline_s:.0f}s")


async def main(args: argparse.Namespace) -> None:
    await up(InfraSettings())
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(namespace=f"bench{run}.")
    cat = catalog(kafka)
    await create_topics(kafka, cat)
    dsn = await fresh_database("commands")
    env = {**os.environ, "KJS_NAMESPACE": kafka.namespace, "KJS_DATABASE_URL": dsn}
    kjs = [sys.executable, "-m", "kjs.cli", "--loglevel", "warning"]
    scheduler = await asyncio.create_subprocess_exec(*kjs, "scheduler", env=env)
    pool = await asyncpg.create_pool(dsn)
    assert pool is not None
    producer = AIOKafkaProducer(bootstrap_servers=kafka.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        # Warm-up: the scheduler owns its shards and has stored a first job.
        at = datetime.now(UTC) + timedelta(hours=1)
        await _submit(producer, cat.commands.name, [at], "bench-sink")
        await _stored(pool, 1, 60)
        times = [at + timedelta(microseconds=i) for i in range(args.jobs)]
        t0 = time.monotonic()
        await _submit(producer, cat.commands.name, times, "bench-sink")
        produced = time.monotonic() - t0
        took = produced + await _stored(pool, args.jobs + 1, 600)
        print(
            f"{args.jobs} create commands: produced in {produced:.1f}s, all stored after "
            f"{took:.1f}s: {args.jobs / took:,.0f} creates/s applied"
        )
    finally:
        await producer.stop()
        await pool.close()
        scheduler.terminate()
        await scheduler.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=30_000)
    asyncio.run(main(parser.parse_args()))

"""How long `kjs shards resize` takes with 100,000 jobs, with two schedulers running.

    .venv/bin/python -m bench.resize --jobs 100000 --before 6 --after 12

A fresh database gets ``--jobs`` one-time jobs of 10,000 tenants spread over the next day
(COPY, on their shards under ``--before`` partitions); two ``kjs scheduler`` processes own the
shards; then the resize runs (scheduler/resize.py) and prints the time of its fence-and-move
transaction (the only time a shard cannot write) and the total, from the lock until the
schedulers own every new shard (which bounds how late a job due during the resize fires).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.databases import fresh_database
from bench.pending import copy_jobs
from core.settings import KafkaSettings
from scheduler.resize import Outcome, resize
from topics.admin import create_topics
from topics.catalog import catalog
from topics.partitioner import partition_for


async def _owned(conn: asyncpg.Connection, shards: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned = await conn.fetchval("SELECT count(*) FROM kjs_shards WHERE owner <> 'kjs resize'")
        if owned == shards:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the schedulers did not own {shards} shards")


async def main(args: argparse.Namespace) -> None:
    dsn = await fresh_database("resize")
    kafka = KafkaSettings(
        namespace=f"bench{os.getpid()}.", command_partitions=args.before, due_partitions=3
    )
    await create_topics(kafka, catalog(kafka))
    start = datetime.now(UTC) + timedelta(hours=1)
    await copy_jobs(dsn, args.jobs, args.before, start, 86_400)
    env = {
        **os.environ,
        "KJS_DATABASE_URL": dsn,
        "KJS_NAMESPACE": kafka.namespace,
        "KJS_COMMAND_PARTITIONS": str(args.before),
        "KJS_DUE_PARTITIONS": "3",
    }
    schedulers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kjs.cli", "--loglevel", "warning", "scheduler", env=env
        )
        for _ in range(2)
    ]
    conn = await asyncpg.connect(dsn)
    try:
        await _owned(conn, args.before)
        plan = await resize(dsn, kafka, args.after, dry_run=True)
        print("\n".join(plan.lines()))
        done = await resize(dsn, kafka, args.after)
        assert isinstance(done, Outcome)
        assert not done.unclaimed, f"shards {done.unclaimed} not taken back"
        rows = await conn.fetch("SELECT user_id, shard FROM kjs_jobs GROUP BY user_id, shard")
        wrong = sum(r["shard"] != partition_for(r["user_id"].encode(), args.after) for r in rows)
        assert wrong == 0, f"{wrong} tenants on the wrong shard"
        print(
            f"resize of {args.jobs:,} jobs from {args.before} to {args.after} partitions, two "
            f"schedulers running: {done.total_s:.2f} s in all; shards paused "
            f"{done.paused_s:.2f} s (fence and move {done.fence_s:.2f} s, then every shard "
            "taken back)"
        )
    finally:
        await conn.close()
        for proc in schedulers:
            proc.terminate()
            await proc.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--before", type=int, default=6)
    p.add_argument("--after", type=int, default=12)
    asyncio.run(main(p.parse_args()))

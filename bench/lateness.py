"""Fire lateness and burst drain, on the real stack, with the cheap ``kafka`` target.

    .venv/bin/python -m bench.lateness --rate 500 --seconds 10 --burst 10000

Starts the local services (``infra``), a fresh database and topic namespace, one
``kjs scheduler`` and one ``kjs worker --lane normal`` as subprocesses. Jobs are submitted
straight to ``jobs.commands`` well ahead of their time, so submission cost is not measured.
Lateness is the execution's ``started_at`` (the worker's start of the target, recorded
with its result) minus its ``scheduled_for``. Prints p50/p99/max lateness, the burst's
drain time (last start minus the due second) and the processes' peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.databases import fresh_database
from core.settings import InfraSettings, KafkaSettings
from infra.supervisor import up
from topics.admin import create_topics
from topics.catalog import catalog


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _job(user: str, at: datetime, sink: str) -> bytes:
    return json.dumps(
        {
            "type": "create",
            "job": {
                "user_id": user,
                "name": "bench",
                "schedule": {"type": "once", "at": at.isoformat()},
                "target": {"type": "kafka", "topic": sink, "value": {"at": at.isoformat()}},
            },
        }
    ).encode()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _submit(producer: AIOKafkaProducer, topic: str, times: list[datetime], sink: str) -> None:
    futures = []
    for i, at in enumerate(times):
        user = f"bench-{i % 997}"
        futures.append(await producer.send(topic, _job(user, at, sink), key=user.encode()))
    await asyncio.gather(*futures)


async def _wait_started(pool: asyncpg.Pool, n: int, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        done = await pool.fetchval(
            "SELECT count(*) FROM kjs_executions WHERE finished_at IS NOT NULL"
        )
        if done >= n:
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"only {done} of {n} executions started in {deadline_s:.0f}s")


async def main(args: argparse.Namespace) -> None:
    await up(InfraSettings())
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(namespace=f"bench{run}.")
    cat = catalog(kafka)
    await create_topics(kafka, cat)
    sink = f"bench{run}.sink"
    from confluent_kafka.admin import NewTopic

    from topics.admin import admin_client

    admin = admin_client(kafka)  # must outlive its futures
    await asyncio.wrap_future(admin.create_topics([NewTopic(sink, 6, 1)])[sink])
    dsn = await fresh_database("lateness")
    env = {
        **os.environ,
        "KJS_NAMESPACE": kafka.namespace,
        "KJS_DATABASE_URL": dsn,
        "KJS_WORKER_CONCURRENCY": str(args.concurrency),
    }
    kjs = [sys.executable, "-m", "kjs.cli", "--loglevel", "warning"]
    procs = [
        await asyncio.create_subprocess_exec(*kjs, "scheduler", env=env),
        await asyncio.create_subprocess_exec(*kjs, "worker", "--lane", "normal", env=env),
    ]
    pool = await asyncpg.create_pool(dsn)
    assert pool is not None
    producer = AIOKafkaProducer(bootstrap_servers=kafka.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        start = datetime.now(UTC) + timedelta(seconds=args.lead_in)
        steady = [
            start + timedelta(seconds=i / args.rate) for i in range(int(args.rate * args.seconds))
        ]
        burst_at = (start + timedelta(seconds=args.seconds + 3)).replace(microsecond=0)
        burst = [
            burst_at + timedelta(microseconds=i * 1_000_000 // args.burst)
            for i in range(args.burst)
        ]
        t0 = time.monotonic()
        await _submit(producer, cat.commands.name, steady + burst, sink)
        print(f"submitted {len(steady) + len(burst)} jobs in {time.monotonic() - t0:.1f}s")
        await _wait_started(pool, len(steady) + len(burst), args.lead_in + args.seconds + 120)
        rows = await pool.fetch(
            "SELECT scheduled_for, started_at FROM kjs_executions ORDER BY scheduled_for"
        )
        late = {
            r["scheduled_for"]: (r["started_at"] - r["scheduled_for"]).total_seconds() * 1000
            for r in rows
        }
        steady_ms = [late[t] for t in steady if t in late]
        burst_rows = [r for r in rows if r["scheduled_for"] >= burst_at]
        drain = max(r["started_at"] for r in burst_rows) - burst_at
        print(
            f"steady {args.rate}/s x {args.seconds}s: n={len(steady_ms)} "
            f"p50={statistics.median(steady_ms):.1f}ms p99={_percentile(steady_ms, 0.99):.1f}ms "
            f"p99.9={_percentile(steady_ms, 0.999):.1f}ms "
            f"max={max(steady_ms):.1f}ms early(<0)={sum(1 for v in steady_ms if v < 0)}"
        )
        burst_p99 = _percentile([late[r["scheduled_for"]] for r in burst_rows], 0.99)
        print(
            f"burst {args.burst} due within 1s: drained {drain.total_seconds():.2f}s after the "
            f"due second; p99 lateness {burst_p99:.0f}ms"
        )
        rss = [_rss_kib(p.pid) // 1024 for p in procs]
        print(f"peak RSS: scheduler {rss[0]} MiB, worker {rss[1]} MiB")
    finally:
        await producer.stop()
        await pool.close()
        for p in procs:
            p.terminate()
        for p in procs:
            await p.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--lead-in", type=float, default=40, help="seconds before the first fire")
    parser.add_argument("--concurrency", type=int, default=256)
    asyncio.run(main(parser.parse_args()))

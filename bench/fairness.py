"""Fair sharing of a lane: a small tenant's lateness while another tenant's flood drains.

    .venv/bin/python -m bench.fairness --flood 5000 --few 20 --runs 3

Tenant A has ``--flood`` one-time jobs and tenant B ``--few``, all due at the same instant
in the normal lane, A's submitted first. Each run gets a fresh database and topic
namespace, one ``kjs scheduler`` and one ``kjs worker --lane normal`` as subprocesses, and
an HTTP target in this process that records when each call arrives (``--target-ms`` per
call, the target's own work). Lateness is the arrival at the target minus the due instant.
Runs alternate fair sharing on and off (``KJS_FAIR_DISPATCH``) and print, per mode, the
median over the runs of B's p99 lateness and A's drain (its last arrival minus the
instant), with every run's figures. Needs the local broker and Postgres running
(``kjs infra up``, or ``kjs dev``).
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
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiokafka import AIOKafkaProducer

from bench.databases import fresh_database
from core.settings import KafkaSettings
from topics.admin import create_topics
from topics.catalog import catalog
from topics.partitioner import partition_for

PARTITIONS = KafkaSettings().command_partitions


def _same_shard(name: str, as_of: str) -> str:
    """``name`` with a number added until its shard is ``as_of``'s (a shard owns a tenant):
    both tenants then share one shard's lane, the case the interleaving is for."""
    home = partition_for(as_of.encode(), PARTITIONS)
    return next(
        f"{name}{i or ''}"
        for i in range(1000)
        if partition_for(f"{name}{i or ''}".encode(), PARTITIONS) == home
    )


TENANTS = {"A": "tenant-a", "B": _same_shard("tenant-b", "tenant-a")}


class Target:
    """Records the first arrival of each job (``/hook/<tenant>/<i>``), by tenant; a job that
    arrives again (at least once, under a lapsed lease) keeps its first time."""

    def __init__(self, work_s: float) -> None:
        self.work_s = work_s
        self.arrivals: dict[str, dict[str, datetime]] = defaultdict(dict)
        self.arrived = asyncio.Event()
        self.want = 0

    async def hook(self, request: web.Request) -> web.Response:
        tenant, job = request.match_info["tenant"], request.match_info["job"]
        self.arrivals[tenant].setdefault(job, datetime.now(UTC))
        if sum(len(v) for v in self.arrivals.values()) >= self.want:
            self.arrived.set()
        if self.work_s:
            await asyncio.sleep(self.work_s)
        return web.json_response({"ok": True})


def _job(user: str, name: str, at: datetime, url: str) -> bytes:
    return json.dumps(
        {
            "type": "create",
            "job": {
                "user_id": user,
                "name": name,
                "schedule": {"type": "once", "at": at.isoformat()},
                "target": {"type": "http", "method": "POST", "url": url},
                "priority": "normal",
                "retry": {"max_attempts": 1},
            },
        }
    ).encode()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_run(
    args: argparse.Namespace, fair: bool, target: Target, port: int
) -> tuple[float, float, int]:
    """(B's p99 lateness s, A's drain s, A's jobs that ran) of one run."""
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(namespace=f"fair{run}.")
    cat = catalog(kafka)
    for attempt in range(3):  # a broker busy with other work may time a metadata call out
        try:
            await create_topics(kafka, cat)
            break
        except Exception as exc:
            if attempt == 2:
                raise
            print(f"creating the topics failed ({exc}); again", flush=True)
    dsn = await fresh_database("fairness")
    env = {
        **os.environ,
        "KJS_NAMESPACE": kafka.namespace,
        "KJS_DATABASE_URL": dsn,
        "KJS_HTTP_ALLOWLIST": json.dumps(["127.0.0.1"]),
        "KJS_WORKER_CONCURRENCY": str(args.concurrency),
        "KJS_FAIR_DISPATCH": "true" if fair else "false",
    }
    kjs = [sys.executable, "-m", "kjs.cli", "--loglevel", "warning"]
    procs = [
        await asyncio.create_subprocess_exec(*kjs, "scheduler", env=env),
        await asyncio.create_subprocess_exec(*kjs, "worker", "--lane", "normal", env=env),
    ]
    target.arrivals.clear()
    target.arrived.clear()
    target.want = args.flood + args.few
    producer = AIOKafkaProducer(bootstrap_servers=kafka.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        at = (datetime.now(UTC) + timedelta(seconds=args.lead_in)).replace(microsecond=0)
        acks = []
        for tag, n in (("A", args.flood), ("B", args.few)):
            user = TENANTS[tag]
            for i in range(n):
                url = f"http://127.0.0.1:{port}/hook/{tag}/{i}"
                value = _job(user, f"{tag}-{i}", at, url)
                acks.append(await producer.send(cat.commands.name, value, key=user.encode()))
        await asyncio.gather(*acks)
        deadline = (at - datetime.now(UTC)).total_seconds() + args.timeout
        try:
            await asyncio.wait_for(target.arrived.wait(), deadline)
        except TimeoutError:
            pass
        a, b = list(target.arrivals["A"].values()), list(target.arrivals["B"].values())
        if len(b) < args.few:
            raise SystemExit(f"only {len(b)} of B's {args.few} jobs arrived")
        b_late = [(t - at).total_seconds() for t in b]
        drain = (max(a) - at).total_seconds() if a else float("nan")
        return _percentile(b_late, 0.99), drain, len(a)
    finally:
        await producer.stop()
        for p in procs:
            p.terminate()
        for p in procs:
            await p.wait()


async def main(args: argparse.Namespace) -> None:
    target = Target(args.target_ms / 1000)
    app = web.Application()
    app.router.add_post("/hook/{tenant}/{job}", target.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    shards = {TENANTS[t]: partition_for(TENANTS[t].encode(), PARTITIONS) for t in TENANTS}
    print(f"tenants' shards: {shards} of {PARTITIONS}")
    results: dict[bool, list[tuple[float, float, int]]] = {True: [], False: []}
    try:
        for _ in range(args.runs):
            for fair in (True, False):
                t0 = time.monotonic()
                b99, drain, a_calls = await one_run(args, fair, target, port)
                results[fair].append((b99, drain, a_calls))
                print(
                    f"fair={'on ' if fair else 'off'} B p99 {b99 * 1000:.0f} ms, "
                    f"A drained {drain:.2f} s ({a_calls}/{args.flood} of A's ran) "
                    f"[{time.monotonic() - t0:.0f} s]",
                    flush=True,
                )
    finally:
        await runner.cleanup()
    for fair in (True, False):
        runs = results[fair]
        print(
            f"fair sharing {'on ' if fair else 'off'}: median of {len(runs)} runs: "
            f"B p99 lateness {statistics.median(r[0] for r in runs) * 1000:.0f} ms, "
            f"A drained {statistics.median(r[1] for r in runs):.2f} s after the instant, "
            f"all of A's ran: {all(r[2] == args.flood for r in runs)}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--flood", type=int, default=5000, help="tenant A's jobs")
    parser.add_argument("--few", type=int, default=20, help="tenant B's jobs")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode")
    parser.add_argument("--target-ms", type=float, default=10.0, help="each call's work")
    parser.add_argument("--concurrency", type=int, default=64, help="the worker's")
    parser.add_argument("--lead-in", type=float, default=25, help="seconds before the instant")
    parser.add_argument("--timeout", type=float, default=120, help="seconds after it")
    asyncio.run(main(parser.parse_args()))

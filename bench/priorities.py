"""Priorities under load: p99 lateness of critical jobs while 100,000 low jobs are queued.

    .venv/bin/python -m bench.priorities --runs 3

Each run gets a fresh topic namespace and database and starts one ``kjs worker`` per lane as
a subprocess (``python -m kjs.cli worker --lane L``, configured through ``KJS_NAMESPACE`` and
``KJS_DATABASE_URL``). No scheduler runs: the bench plays its part, so that what is measured
is the lanes, not the firing.

1. Warm up: one execution per lane, to know each worker holds its partitions.
2. Baseline: ``--critical`` critical jobs at ``--critical-rate`` per second, each due event
   produced a lead (250 ms, as the scheduler does) before its time, on an idle system.
3. Flood: ``--low`` low executions, all due at once, are inserted with COPY and their due
   events produced straight onto the low lane; once they are all in the topic, the same
   critical series as in 2 runs while the low worker works through its backlog.

Every job has the cheap ``kafka`` target (delivery to a sink topic), so the targets cost
little and the lanes compete for the same two cores, Postgres and broker. Lateness is the
execution's ``started_at`` (the worker's claim, on the instant it starts the target) minus
its ``scheduled_for``. A run prints the critical p50/p99/max of both phases, how many low
jobs were still waiting when the last critical one started (the flood must still be on for
the figure to mean anything), and the low lane's drain time; the last lines are the medians
over the runs.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from confluent_kafka.admin import NewTopic

from core.db import migrate_url
from core.settings import DatabaseSettings, InfraSettings, KafkaSettings
from infra.supervisor import up
from schemas.v1.events import DueEvent
from schemas.v1.statuses import LANES, Lane
from topics.admin import admin_client, create_topics
from topics.catalog import Catalog, catalog

LEAD = timedelta(milliseconds=250)
JOBS_PER_LANE = 1000
EXECUTION_COLUMNS = (
    "execution_id",
    "job_id",
    "user_id",
    "shard",
    "scheduled_for",
    "attempt",
    "lane",
    "status",
    "dispatched_at",
)


@dataclass(frozen=True)
class Planned:
    execution_id: uuid.UUID
    job_id: uuid.UUID
    scheduled_for: datetime
    lane: Lane


@dataclass(frozen=True)
class RunFigures:
    baseline_p50: float
    baseline_p99: float
    baseline_max: float
    flood_p50: float
    flood_p99: float
    flood_max: float
    low_waiting_at_last_critical: int
    low_drain_s: float

    def lines(self) -> list[str]:
        return [
            f"  critical, idle:    p50={self.baseline_p50:.1f}ms p99={self.baseline_p99:.1f}ms "
            f"max={self.baseline_max:.1f}ms",
            f"  critical, flooded: p50={self.flood_p50:.1f}ms p99={self.flood_p99:.1f}ms "
            f"max={self.flood_max:.1f}ms",
            f"  low jobs still waiting when the last critical one started: "
            f"{self.low_waiting_at_last_critical}",
            f"  low lane drained its backlog in {self.low_drain_s:.1f}s",
        ]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


class Bench:
    """One run's stack: namespace, database, workers, and the bench's own connections."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        run = uuid.uuid4().hex[:8]
        self.kafka = KafkaSettings(namespace=f"prio{run}.")
        self.cat: Catalog = catalog(self.kafka)
        self.sink = f"prio{run}.sink"
        self.db_name = f"kjs_prio_{run}"
        admin_dsn = DatabaseSettings().database_url.get_secret_value()
        self.admin_dsn = admin_dsn
        self.dsn = admin_dsn.rsplit("/", 1)[0] + "/" + self.db_name
        self.workers: list[asyncio.subprocess.Process] = []
        self.jobs: dict[Lane, list[uuid.UUID]] = {}

    # --- setup and teardown --------------------------------------------------------------

    async def start(self) -> None:
        await create_topics(self.kafka, self.cat)
        admin = admin_client(self.kafka)
        await asyncio.wrap_future(admin.create_topics([NewTopic(self.sink, 6, 1)])[self.sink])
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{self.db_name}"')
        finally:
            await conn.close()
        await migrate_url(self.dsn)
        pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4)
        assert pool is not None
        self.pool: asyncpg.Pool = pool
        # Two producers: critical events must not queue behind the flood's batches in the
        # bench's own client, or the bench would measure itself.
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka.kafka_bootstrap, linger_ms=10, max_batch_size=1 << 20
        )
        self.critical_producer = AIOKafkaProducer(bootstrap_servers=self.kafka.kafka_bootstrap)
        for producer in (self.producer, self.critical_producer):
            await producer.start()
        await self._insert_jobs()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
        env |= {
            "KJS_NAMESPACE": self.kafka.namespace,
            "KJS_DATABASE_URL": self.dsn,
            "KJS_WORKER_CONCURRENCY": str(self.args.concurrency),
            "KJS_EXECUTION_RETENTION_DAYS": "0",
        }
        kjs = [sys.executable, "-m", "kjs.cli", "--loglevel", "warning", "worker", "--lane"]
        for lane in LANES:
            self.workers.append(await asyncio.create_subprocess_exec(*kjs, lane, env=env))

    async def stop(self) -> None:
        for proc in self.workers:
            if proc.returncode is None:
                proc.terminate()
        for proc in self.workers:
            await proc.wait()
        for producer in (self.producer, self.critical_producer):
            await producer.stop()
        await self.pool.close()
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        finally:
            await conn.close()
        admin = admin_client(self.kafka)
        names = [spec.name for spec in self.cat.all()] + [self.sink]
        for future in admin.delete_topics(names).values():
            await asyncio.wrap_future(future)

    async def _insert_jobs(self) -> None:
        """A thousand jobs per lane: executions spread over them keep (job_id, scheduled_for,
        attempt) unique without needing a distinct instant each."""
        rows: list[tuple[Any, ...]] = []
        for lane in LANES:
            self.jobs[lane] = [uuid.uuid4() for _ in range(JOBS_PER_LANE)]
            rows.extend(
                (
                    job_id,
                    f"bench-{lane}",
                    0,
                    "bench",
                    {"type": "interval", "every_seconds": 3600},
                    {"type": "kafka", "topic": self.sink},
                    lane,
                    {"max_attempts": 1},
                    "queued",
                    "bench",
                )
                for job_id in self.jobs[lane]
            )
        await self.pool.executemany(
            "INSERT INTO kjs_jobs (job_id, user_id, shard, name, schedule, target, priority,"
            " retry, status, source) VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb,"
            " $7, $8::text::jsonb, $9, $10)",
            [
                (*r[:4], json.dumps(r[4]), json.dumps(r[5]), r[6], json.dumps(r[7]), *r[8:])
                for r in rows
            ],
        )

    # --- executions and their due events ---------------------------------------------------

    def plan(self, lane: Lane, times: Iterable[datetime]) -> list[Planned]:
        jobs = self.jobs[lane]
        return [Planned(uuid.uuid4(), jobs[i % len(jobs)], at, lane) for i, at in enumerate(times)]

    async def insert(self, planned: Sequence[Planned]) -> None:
        """Execution rows as the scheduler leaves them (queued, dispatched), with COPY."""
        now = datetime.now(UTC)
        await self.pool.copy_records_to_table(
            "kjs_executions",
            records=[
                (
                    p.execution_id,
                    p.job_id,
                    f"bench-{p.lane}",
                    0,
                    p.scheduled_for,
                    1,
                    p.lane,
                    "queued",
                    now,
                )
                for p in planned
            ],
            columns=EXECUTION_COLUMNS,
        )

    def event(self, p: Planned) -> bytes:
        return (
            DueEvent.model_validate(
                {
                    "execution_id": p.execution_id,
                    "job_id": p.job_id,
                    "user_id": f"bench-{p.lane}",
                    "attempt": 1,
                    "scheduled_for": p.scheduled_for,
                    "lane": p.lane,
                    "target": {"type": "kafka", "topic": self.sink, "value": {"n": 1}},
                    "shard": 0,
                }
            )
            .model_dump_json()
            .encode()
        )

    def records(self, planned: Sequence[Planned]) -> list[tuple[str, bytes, bytes]]:
        """(topic, key, value) of each due event, keyed by job_id as the scheduler keys them."""
        return [(self.cat.due[p.lane].name, str(p.job_id).encode(), self.event(p)) for p in planned]

    async def produce_now(
        self, records: Sequence[tuple[str, bytes, bytes]], producer: AIOKafkaProducer
    ) -> None:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
        await asyncio.gather(*futures)

    async def produce_with_lead(self, planned: Sequence[Planned]) -> None:
        """Each event a lead before its time, as the scheduler's shard timer sends it."""
        for p in planned:
            wait = (p.scheduled_for - LEAD - datetime.now(UTC)).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.produce_now(self.records([p]), self.critical_producer)

    async def lateness_ms(self, planned: Sequence[Planned], deadline_s: float) -> list[float]:
        """Wait until every one of ``planned`` started; their lateness in milliseconds."""
        ids = [p.execution_id for p in planned]
        deadline = time.monotonic() + deadline_s
        while True:
            rows = await self.pool.fetch(
                "SELECT scheduled_for, started_at FROM kjs_executions"
                " WHERE execution_id = ANY($1) AND started_at IS NOT NULL",
                ids,
            )
            if len(rows) == len(ids):
                return [(r["started_at"] - r["scheduled_for"]).total_seconds() * 1000 for r in rows]
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(rows)} of {len(ids)} started in {deadline_s:.0f}s")
            await asyncio.sleep(0.2)

    async def low_waiting(self) -> int:
        return int(
            await self.pool.fetchval(
                "SELECT count(*) FROM kjs_executions WHERE lane = 'low' AND status = 'queued'"
            )
        )

    async def drained(self, deadline_s: float) -> None:
        """Wait until the low lane started every execution it was given."""
        deadline = time.monotonic() + deadline_s
        while (left := await self.low_waiting()) > 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"{left} low executions not started in {deadline_s:.0f}s")
            await asyncio.sleep(0.2)

    # --- the phases ------------------------------------------------------------------------

    async def warm_up(self) -> None:
        at = datetime.now(UTC) + timedelta(seconds=1)
        planned = [p for lane in LANES for p in self.plan(lane, [at])]
        await self.insert(planned)
        await self.produce_now(self.records(planned), self.producer)
        await self.lateness_ms(planned, deadline_s=120)

    def critical_series(self, start: datetime) -> list[Planned]:
        step = timedelta(seconds=1 / self.args.critical_rate)
        return self.plan("critical", [start + i * step for i in range(self.args.critical)])

    async def run(self) -> RunFigures:
        await self.warm_up()

        baseline = self.critical_series(datetime.now(UTC) + timedelta(seconds=2))
        await self.insert(baseline)
        await self.produce_with_lead(baseline)
        idle = await self.lateness_ms(baseline, deadline_s=60)

        flood_at = datetime.now(UTC) + timedelta(seconds=1)
        # Within 0.1 s of each other: one distinct instant per execution of a job.
        low = self.plan("low", [flood_at + timedelta(microseconds=i) for i in range(self.args.low)])
        await self.insert(low)
        flood = self.records(low)  # serialized ahead, so the bench's CPU is not in the way
        flood_started = time.monotonic()
        # All of the flood is in the low lane's topic before the first critical job is
        # produced: the bench's own event loop must not delay the critical series.
        await self.produce_now(flood, self.producer)
        critical = self.critical_series(
            datetime.now(UTC) + timedelta(seconds=self.args.critical_delay)
        )
        await self.insert(critical)
        await self.produce_with_lead(critical)
        flooded = await self.lateness_ms(critical, deadline_s=120)
        waiting = await self.low_waiting()
        await self.drained(deadline_s=900)
        drained_s = time.monotonic() - flood_started
        return RunFigures(
            statistics.median(idle),
            percentile(idle, 0.99),
            max(idle),
            statistics.median(flooded),
            percentile(flooded, 0.99),
            max(flooded),
            waiting,
            drained_s,
        )


async def main(args: argparse.Namespace) -> None:
    await up(InfraSettings())
    runs: list[RunFigures] = []
    for n in range(1, args.runs + 1):
        bench = Bench(args)
        await bench.start()
        try:
            figures = await bench.run()
        finally:
            await bench.stop()
        runs.append(figures)
        print(f"run {n}:", *figures.lines(), sep="\n", flush=True)
    median = RunFigures(
        *(statistics.median(getattr(r, f) for r in runs) for f in RunFigures.__dataclass_fields__)
    )
    print(
        f"median of {len(runs)} runs ({args.low} low jobs queued, {args.critical} critical at "
        f"{args.critical_rate:g}/s, concurrency {args.concurrency} per worker):",
        *median.lines(),
        sep="\n",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--low", type=int, default=100_000, help="low jobs queued at once")
    parser.add_argument("--critical", type=int, default=200, help="critical jobs per phase")
    parser.add_argument("--critical-rate", type=float, default=20.0, help="per second")
    parser.add_argument(
        "--critical-delay",
        type=float,
        default=2.0,
        help="seconds after the flood is produced that the first critical job is due",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="KJS_WORKER_CONCURRENCY")
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args()))

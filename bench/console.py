"""The console's job list at 100,000 jobs of one tenant: server time of the first and a deep page.

    .venv/bin/python -m bench.console --jobs 100000

1. A fresh, migrated database gets ``--jobs`` jobs of one tenant (and ``--others`` of a
   thousand other tenants), created a second apart, with mixed statuses, lanes and schedule
   types, and one finished run each, all inserted with COPY; then ANALYZE.
2. The real API app with the console mounted (in this process, on loopback HTTP) is logged
   in to with a key of the tenant, as a browser does.
3. Each page is requested once to warm up, then ``--repeat`` times; the median wall time of
   the request is printed: the first page, a deep page (a cursor 90% of the way down), and
   filtered lists (a rare status; a name search that matches a few jobs, which walks the
   tenant's whole index range). Target: under 300 ms each. ``--without-filter-indexes``
   drops migration 0009's indexes, to compare.

Only Postgres is needed: the command publisher is never used and the lag sampler reads nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from api.app import build_app
from api.cursor import Cursor, encode_cursor
from api.deps import ApiDeps
from api.keys import create_key
from api.publisher import CommandPublisher
from bench.databases import fresh_database
from console.app import build_console
from console.lag_history import LagHistory
from core.db import create_pool
from core.settings import ConsoleSettings, DatabaseSettings, InfraSettings, KafkaSettings
from lag.monitor import LagMonitor
from lag.read import LagRead
from topics.catalog import catalog

TENANT = "bench-tenant"
STATUSES = ("scheduled",) * 6 + ("succeeded",) * 3 + ("paused",)
LANES = ("normal", "normal", "critical", "low")
TARGET = json.dumps({"type": "http", "method": "POST", "url": "https://example.com/hook"})
RETRY = json.dumps({"max_attempts": 3, "initial_delay_s": 1.0, "max_delay_s": 300.0})
T0 = datetime(2026, 1, 1, tzinfo=UTC)
JOB_COLUMNS = [
    "job_id", "user_id", "shard", "name", "schedule", "target", "priority", "retry", "status",
    "next_run_at", "source", "created_at", "updated_at",
]  # fmt: skip
RUN_COLUMNS = [
    "execution_id", "job_id", "user_id", "shard", "scheduled_for", "attempt", "lane", "status",
    "dispatched_at", "started_at", "finished_at", "worker", "http_status", "created_at",
]  # fmt: skip


class NoGroups:
    """The lag sampler's reader: nothing to read (the benchmark is about the job list)."""

    async def read(self, groups: Mapping[str, Sequence[str]]) -> LagRead:
        return LagRead(at=time.time(), groups=())


def schedule(i: int) -> dict[str, object]:
    if i % 3 == 0:
        return {"type": "interval", "every_seconds": 300}
    if i % 3 == 1:
        return {"type": "cron", "expression": "*/5 * * * *", "timezone": "Europe/Berlin"}
    return {"type": "once", "at": (T0 + timedelta(days=400)).isoformat()}


async def fill(dsn: str, jobs: int, others: int, without_filter_indexes: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        rows, runs = [], []
        for i in range(jobs + others):
            user = TENANT if i < jobs else f"other-{i % 1000}"
            job_id = uuid.uuid4()
            status = STATUSES[i % len(STATUSES)]
            if i % 997 == 0:
                status = "failed"  # rare: about 100 of the tenant's jobs
            kind = schedule(i)
            if kind["type"] == "once" and status == "scheduled":
                status = "succeeded"
            created = T0 + timedelta(seconds=i)
            next_run = created + timedelta(days=30) if status in ("scheduled", "paused") else None
            name = f"job {i} " + ("nightly-export" if i % 10_000 == 7 else "report")
            lane = LANES[i % len(LANES)]
            rows.append(
                (job_id, user, i % 6, name, json.dumps(kind), TARGET, lane, RETRY, status,
                 next_run, "bench", created, created)
            )  # fmt: skip
            ran = created + timedelta(milliseconds=500)
            runs.append(
                (uuid.uuid4(), job_id, user, i % 6, ran, 1, LANES[i % len(LANES)], "succeeded",
                 ran, ran, ran + timedelta(milliseconds=80), "bench-worker", 200, ran)
            )  # fmt: skip
        await conn.copy_records_to_table("kjs_jobs", records=rows, columns=JOB_COLUMNS)
        await conn.copy_records_to_table("kjs_executions", records=runs, columns=RUN_COLUMNS)
        if without_filter_indexes:
            for name in ("status", "priority", "kind"):
                await conn.execute(f"DROP INDEX kjs_jobs_by_user_{name}")
        await conn.execute("ANALYZE kjs_jobs; ANALYZE kjs_executions")
    finally:
        await conn.close()


async def deep_cursor(dsn: str, depth: int) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT created_at, job_id FROM kjs_jobs WHERE user_id = $1"
            " ORDER BY created_at DESC, job_id DESC OFFSET $2 LIMIT 1",
            TENANT,
            depth,
        )
    finally:
        await conn.close()
    assert row is not None
    return encode_cursor(Cursor(row["created_at"], row["job_id"]))


async def timed(client: TestClient, path: str, params: dict[str, str], repeat: int) -> float:
    """Median milliseconds of ``repeat`` requests, after one to warm up."""
    times = []
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        resp = await client.get(path, params=params)
        body = await resp.text()
        elapsed = (time.perf_counter() - t0) * 1000
        assert resp.status == 200, body[:500]
        assert 'id="jobs"' in body
        if i:
            times.append(elapsed)
    return statistics.median(times)


async def main(args: argparse.Namespace) -> None:
    if not ("KJS_DATABASE_URL" in os.environ and "KJS_KAFKA_BOOTSTRAP" in os.environ):
        from infra.supervisor import up

        await up(InfraSettings())
    dsn = await fresh_database("console")
    t0 = time.monotonic()
    await fill(dsn, args.jobs, args.others, args.without_filter_indexes)
    print(
        f"{args.jobs:,} jobs of one tenant (+{args.others:,} of others), a run each, "
        f"copied in {time.monotonic() - t0:.1f}s"
    )
    pool = await create_pool(DatabaseSettings(), dsn=dsn, custom_plans=True)
    publisher = CommandPublisher(KafkaSettings(), timeout_s=5.0)  # never used
    api = build_app(ApiDeps(pool, publisher, catalog(KafkaSettings()), timedelta(seconds=60)))
    history = LagHistory(LagMonitor(NoGroups(), {}), interval_s=600)
    api.add_subapp("/ui/", build_console(api, ConsoleSettings(), history))
    _, key = await create_key(pool, TENANT, ["read"], name="bench")
    try:
        async with TestClient(TestServer(api)) as client:
            url = client.make_url("/")
            resp = await client.post(
                "/ui/login",
                data={"key": key, "next": "/ui/jobs"},
                headers={"Origin": f"{url.scheme}://{url.host}:{url.port}"},
            )
            assert resp.status == 200, await resp.text()
            deep = await deep_cursor(dsn, int(args.jobs * 0.9))
            cases = [
                ("first page", {}),
                (f"deep page (row {int(args.jobs * 0.9):,})", {"cursor": deep}),
                ("status=failed (rare), first page", {"status": "failed"}),
                ("lane=low, deep page", {"priority": "low", "cursor": deep}),
                ("name contains 'nightly-export' (10 jobs)", {"q": "nightly-export"}),
            ]
            for label, params in cases:
                ms = await timed(client, "/ui/jobs", params, args.repeat)
                print(f"jobs list, {label}: median of {args.repeat} = {ms:.1f} ms")
    finally:
        await publisher.close()
        await pool.close()
        admin = DatabaseSettings().database_url.get_secret_value()
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
        await conn.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=100_000, help="jobs of the tenant (100,000)")
    p.add_argument("--others", type=int, default=50_000, help="jobs of other tenants (50,000)")
    p.add_argument("--repeat", type=int, default=3, help="timed requests per page (3)")
    p.add_argument(
        "--without-filter-indexes",
        action="store_true",
        help="drop migration 0009's indexes first, to see what they are for",
    )
    asyncio.run(main(p.parse_args()))

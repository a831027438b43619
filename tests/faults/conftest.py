"""Fault-injection harness: real ``kjs`` processes, a real broker and Postgres, and a target
that records every call with its ``Idempotency-Key``.

Each scenario gets a fresh database and topic namespace (``running_stack``), drives a known set
of one-time jobs, injects its fault, and then compares the target's own record of calls with
what was submitted (``Report``). The broker- and Postgres-restart scenarios run on a private
broker and Postgres (``private_infra``) so the shared services are never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from core.db import create_pool, migrate_url
from core.settings import DatabaseSettings, InfraSettings, KafkaSettings, known_env_names
from tests.acceptance.conftest import Process, free_port
from tests.waiting import eventually
from topics.admin import create_topics
from topics.catalog import Catalog, catalog
from topics.producer import durable_producer

SHARED_JARS = Path(__file__).resolve().parents[2] / ".kjs" / "kafka-libs"
PARTITIONS = 3
# More jobs per scenario over the same time span, for the soak (bench/soak.py); 1 in CI.
SCALE = int(os.environ.get("FAULT_SCALE", "1"))


# --- the target ---------------------------------------------------------------------------


@dataclass
class Call:
    job: str
    key: str
    at: datetime


@dataclass
class Target:
    """An HTTP endpoint that records (job, Idempotency-Key, time) of every call."""

    base_url: str
    calls: list[Call] = field(default_factory=list)
    slow_s: float = 0.0

    def url(self, job: str) -> str:
        return f"{self.base_url}/hook/{job}"

    def keys(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for c in self.calls:
            out[c.job][c.key] += 1
        return out


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    port = free_port()
    tgt = Target(f"http://127.0.0.1:{port}")

    async def hook(request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        tgt.calls.append(Call(request.match_info["job"], key, datetime.now(UTC)))
        if tgt.slow_s:
            await asyncio.sleep(tgt.slow_s)  # the slow target being simulated
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/hook/{job}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield tgt
    await runner.cleanup()


# --- the report ---------------------------------------------------------------------------


@dataclass
class Report:
    scenario: str
    submitted: int
    fired: int
    executed: int
    lost: int
    executed_twice: int
    redelivered_same_key: int
    max_lateness_s: float
    recovery_s: float | None

    def print(self) -> None:
        rec = "-" if self.recovery_s is None else f"{self.recovery_s:.2f}s"
        line = (
            f"FAULT-REPORT {self.scenario}: submitted={self.submitted} fired={self.fired} "
            f"executed={self.executed} lost={self.lost} executed_twice={self.executed_twice} "
            f"redelivered_same_key={self.redelivered_same_key} "
            f"max_lateness={self.max_lateness_s:.2f}s recovery={rec}"
        )
        print(line, file=sys.stderr)
        path = os.environ.get("FAULT_REPORT_FILE")  # read by bench/soak.py only
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(self.__dict__) + "\n")

    def check(self) -> None:
        self.print()
        assert self.lost == 0, self
        assert self.executed_twice == 0, self


@dataclass
class Submitted:
    job_id: str
    name: str
    at: datetime


# --- the stack ----------------------------------------------------------------------------


@dataclass
class Stack:
    name: str
    env: dict[str, str]
    catalog: Catalog
    pool: asyncpg.Pool
    processes: dict[str, Process]
    target: Target
    jobs: list[Submitted] = field(default_factory=list)
    producer: AIOKafkaProducer | None = None

    @property
    def bootstrap(self) -> str:
        return self.env["KJS_KAFKA_BOOTSTRAP"]

    async def produce(self, key: str, value: bytes) -> tuple[int, int]:
        """Produce to jobs.commands as any client would; returns (partition, offset)."""
        if self.producer is None:
            self.producer = durable_producer(KafkaSettings(kafka_bootstrap=self.bootstrap))
            await self.producer.start()
        md = await self.producer.send_and_wait(self.catalog.commands.name, value, key=key.encode())
        return int(md.partition), int(md.offset)

    def once_body(self, user_id: str, name: str, at: datetime) -> dict[str, Any]:
        return {
            "user_id": user_id,
            "name": name,
            "schedule": {"type": "once", "at": at.isoformat()},
            "target": {"type": "http", "method": "POST", "url": self.target.url(name)},
            "priority": "normal",
            "retry": {"max_attempts": 1, "initial_delay_s": 1, "max_delay_s": 5},
        }

    async def submit_spread(
        self, n: int, start_in_s: float, every_s: float, users: int = 12, scaled: bool = True
    ) -> list[Submitted]:
        """Submit ``n`` one-time jobs over Kafka, due every ``every_s`` from ``start_in_s``.

        ``FAULT_SCALE`` (the soak, ``bench/soak.py``) multiplies the jobs over the same span."""
        if scaled and SCALE > 1:
            n, every_s = n * SCALE, every_s / SCALE
        t0 = datetime.now(UTC) + timedelta(seconds=start_in_s)
        batch = []
        first = len(self.jobs)  # names stay unique across several calls
        for i in range(n):
            sub = Submitted(
                str(uuid.uuid4()), f"{self.name}-{first + i}", t0 + i * timedelta(seconds=every_s)
            )
            user = f"{self.name}-u{(first + i) % users}"
            cmd = {
                "type": "create",
                "job": {**self.once_body(user, sub.name, sub.at), "job_id": sub.job_id},
            }
            batch.append((user, json.dumps(cmd).encode()))
            self.jobs.append(sub)
        for i in range(0, len(batch), 500):
            await asyncio.gather(*(self.produce(k, v) for k, v in batch[i : i + 500]))
        return self.jobs[-n:]

    async def wait_applied(self, jobs: Iterable[Submitted], timeout_s: float = 60) -> None:
        ids = [uuid.UUID(j.job_id) for j in jobs]

        async def probe() -> bool:
            n = await self.pool.fetchval(
                "SELECT count(*) FROM kjs_jobs WHERE job_id = ANY($1::uuid[])", ids
            )
            return bool(n == len(ids))

        await eventually(probe, timeout_s, interval_s=0.2, what="the jobs to be applied")

    async def wait_all_called(self, timeout_s: float = 90) -> None:
        """Until every submitted job reached the target (or the deadline: the report says)."""
        names = {j.name for j in self.jobs}

        async def probe() -> bool:
            return names <= {c.job for c in self.target.calls}

        try:
            await eventually(probe, timeout_s, interval_s=0.2, what="every job to be called")
        except AssertionError:
            pass  # reported as lost, with the figures, by report()

    async def wait_quiet(self, seconds: float) -> None:
        """Until no new call arrived for ``seconds`` (late duplicates would show up here)."""
        seen = -1
        since = time.monotonic()

        async def probe() -> bool:
            nonlocal seen, since
            if len(self.target.calls) != seen:
                seen, since = len(self.target.calls), time.monotonic()
            return time.monotonic() - since >= seconds

        await eventually(probe, seconds * 4 + 30, interval_s=0.1, what="a quiet target")

    async def shard_owners(self) -> dict[int, str]:
        rows = await self.pool.fetch("SELECT shard, owner FROM kjs_shards")
        return {int(r["shard"]): str(r["owner"]) for r in rows}

    async def wait_owners(self, want: set[str], timeout_s: float = 60) -> dict[int, str]:
        async def probe() -> dict[int, str] | None:
            owners = await self.shard_owners()
            ok = len(owners) == PARTITIONS and set(owners.values()) == want
            return owners if ok else None

        return await eventually(probe, timeout_s, interval_s=0.2, what=f"shards owned by {want}")

    async def refired_at(self, shards: list[int], new_owner: str) -> datetime | None:
        """When every one of ``shards`` (that has jobs) fired again under ``new_owner``: the
        latest, over those shards, of the first execution row written after the new owner's
        epoch bump. Rows after the bump are the new owner's: the old one is fenced by then."""
        at: datetime | None = await self.pool.fetchval(
            """
            SELECT max(first_fire) FROM (
                SELECT s.shard, (SELECT min(e.created_at) FROM kjs_executions e
                                 WHERE e.shard = s.shard AND e.created_at >= s.assigned_at)
                       AS first_fire
                FROM kjs_shards s
                WHERE s.shard = ANY($1::int[]) AND s.owner = $2
                  AND EXISTS (SELECT 1 FROM kjs_jobs j WHERE j.shard = s.shard)
            ) AS per_shard
            HAVING count(*) = count(first_fire) AND count(*) > 0
            """,
            shards,
            new_owner,
        )
        return at

    async def report(self, scenario: str, recovery_s: float | None = None) -> Report:
        fired = await self.pool.fetchval(
            "SELECT count(DISTINCT job_id) FROM kjs_executions WHERE job_id = ANY($1::uuid[])",
            [uuid.UUID(j.job_id) for j in self.jobs],
        )
        keys = self.target.keys()
        first = {c.job: c.at for c in reversed(self.target.calls)}
        lateness = [(first[j.name] - j.at).total_seconds() for j in self.jobs if j.name in first]
        return Report(
            scenario=scenario,
            submitted=len(self.jobs),
            fired=int(fired),
            executed=sum(1 for j in self.jobs if keys.get(j.name)),
            lost=sum(1 for j in self.jobs if not keys.get(j.name)),
            executed_twice=sum(1 for j in self.jobs if len(keys.get(j.name, {})) > 1),
            redelivered_same_key=sum(
                n - 1 for j in self.jobs for n in keys.get(j.name, Counter()).values()
            ),
            max_lateness_s=max(lateness, default=0.0),
            recovery_s=recovery_s,
        )

    def dump_logs(self) -> None:
        for proc in self.processes.values():
            print(proc.tail(60), file=sys.stderr)


@dataclass
class Cluster:
    """Where the stacks run: a broker and a Postgres (the shared ones or private ones)."""

    bootstrap: str
    admin_dsn: str
    logs: Path
    infra: InfraSettings | None = None

    async def database(self, name: str) -> str:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        dsn = self.admin_dsn.rsplit("/", 1)[0] + "/" + name
        await migrate_url(dsn)
        return dsn

    async def drop(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def running_stack(
    cluster: Cluster,
    target: Target,
    name: str,
    schedulers: int = 2,
    workers: int = 1,
    api: bool = False,
    **extra_env: str,
) -> AsyncIterator[Stack]:
    """A fresh database and namespace, ``schedulers`` schedulers (ids s1..), ``workers``
    normal-lane workers (w1..) and optionally the API; stopped and dropped on exit."""
    run = uuid.uuid4().hex[:8]
    db = f"kjs_fault_{name.replace('-', '_')}_{run}"
    dsn = await cluster.database(db)
    ks = KafkaSettings(
        kafka_bootstrap=cluster.bootstrap,
        namespace=f"f{run}.",
        command_partitions=PARTITIONS,
        due_partitions=PARTITIONS,
    )
    cat = catalog(ks)
    await create_topics(ks, cat)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
    env.update(
        KJS_KAFKA_BOOTSTRAP=cluster.bootstrap,
        KJS_NAMESPACE=ks.namespace,
        KJS_COMMAND_PARTITIONS=str(PARTITIONS),
        KJS_DUE_PARTITIONS=str(PARTITIONS),
        KJS_DATABASE_URL=dsn,
        KJS_SESSION_TIMEOUT_S="6",
        KJS_DB_POOL_MAX="4",
        **extra_env,
    )
    if "KJS_HTTP_ALLOWLIST" in known_env_names():  # the SSRF guard refuses loopback otherwise
        env["KJS_HTTP_ALLOWLIST"] = '["127.0.0.1"]'

    kjs = [sys.executable, "-m", "kjs.cli"]
    procs: dict[str, Process] = {}
    for i in range(1, schedulers + 1):
        e = {**env, "KJS_SCHEDULER_ID": f"s{i}"}
        procs[f"s{i}"] = Process(f"s{i}", [*kjs, "scheduler"], e, cluster.logs / f"{run}-s{i}.log")
    for i in range(1, workers + 1):
        e = {**env, "KJS_WORKER_ID": f"w{i}"}
        argv = [*kjs, "worker", "--lane", "normal"]
        procs[f"w{i}"] = Process(f"w{i}", argv, e, cluster.logs / f"{run}-w{i}.log")
    if api:
        e = {**env, "KJS_API_PORT": str(free_port())}
        procs["api"] = Process("api", [*kjs, "api"], e, cluster.logs / f"{run}-api.log")
    pool = await create_pool(DatabaseSettings(), dsn=dsn)
    st = Stack(name, env, cat, pool, procs, target)
    try:
        for proc in procs.values():
            await proc.start()
        await st.wait_owners({f"s{i}" for i in range(1, schedulers + 1)}, 90)
        yield st
    except BaseException:
        st.dump_logs()
        raise
    finally:
        if st.producer is not None:
            await st.producer.stop()
        await asyncio.gather(*(p.stop(timeout_s=10) for p in st.processes.values()))
        await st.pool.close()
        await cluster.drop(db)


@pytest.fixture
async def shared_cluster(services: None, tmp_path: Path) -> Cluster:
    admin = os.environ.get("KJS_DATABASE_URL", DatabaseSettings().database_url.get_secret_value())
    bootstrap = os.environ.get("KJS_KAFKA_BOOTSTRAP", KafkaSettings().kafka_bootstrap)
    return Cluster(bootstrap, admin, tmp_path)


def _private_data_dir() -> Path:
    # Postgres runs as the ``postgres`` user, which must be able to reach the folder.
    root = Path(tempfile.mkdtemp(prefix="kjs-faults-", dir="/tmp"))
    root.chmod(0o755)
    if SHARED_JARS.is_dir():  # reuse the resolved broker jars instead of running Maven again
        (root / "kafka-libs").symlink_to(SHARED_JARS)
    (root / "logs").mkdir()
    return root


@pytest.fixture(scope="module")
async def private_cluster(services: None) -> AsyncIterator[Cluster]:
    """A broker and a Postgres of our own, on free ports, that scenarios may restart.

    Depends on ``services`` only so that the shared broker's jars are resolved first."""
    from infra.supervisor import down, up

    root = _private_data_dir()
    infra = InfraSettings(
        data_dir=root,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        postgres_port=free_port(),
    )
    admin = f"postgresql://kjs@127.0.0.1:{infra.postgres_port}/kjs"
    logs = root / "logs"
    try:
        await up(infra)
        yield Cluster(f"127.0.0.1:{infra.kafka_port}", admin, logs, infra)
    finally:
        await down(infra)
        shutil.rmtree(root, ignore_errors=True)


def kill(proc: Process, sig: int = signal.SIGKILL) -> None:
    assert proc.proc is not None and proc.proc.returncode is None, f"{proc.name} is not running"
    proc.proc.send_signal(sig)

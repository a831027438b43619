"""Fault-injection harness: real ``kjs`` processes, a real broker and Postgres, and a target
that records every call with its ``Idempotency-Key``.

Each scenario gets a fresh database and topic namespace (``running_stack``), drives a known set
of one-time jobs, injects its fault, and then compares the target's own record of calls with
what was submitted (``Stack.report``; the stack and the target are ``tests.support``'s). The
broker- and Postgres-restart scenarios run on a private broker and Postgres
(``private_infra``) so the shared services are never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from core.db import create_pool, migrate_url
from core.settings import DatabaseSettings, InfraSettings, KafkaSettings, known_env_names
from tests.support.stack import Process, Stack, free_port
from tests.support.targets import RecordingTarget, serve_target
from topics.admin import create_topics
from topics.catalog import catalog

SHARED_JARS = Path(__file__).resolve().parents[2] / ".kjs" / "kafka-libs"
PARTITIONS = 3


# --- the target ---------------------------------------------------------------------------


@pytest.fixture
async def target() -> AsyncIterator[RecordingTarget]:
    async with serve_target() as tgt:
        yield tgt


# --- the stack ----------------------------------------------------------------------------


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
    target: RecordingTarget,
    name: str,
    schedulers: int = 2,
    workers: int = 1,
    api: bool = False,
    partitions: int = PARTITIONS,
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
        command_partitions=partitions,
        due_partitions=PARTITIONS,
    )
    cat = catalog(ks)
    await create_topics(ks, cat)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
    env.update(
        KJS_KAFKA_BOOTSTRAP=cluster.bootstrap,
        KJS_NAMESPACE=ks.namespace,
        KJS_COMMAND_PARTITIONS=str(partitions),
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
    st = Stack(env, cat, pool, procs, target, name=name)
    try:
        for proc in procs.values():
            await proc.start()
        await st.wait_owners({f"s{i}" for i in range(1, schedulers + 1)}, 90)
        yield st
    except BaseException:
        st.dump_logs()
        raise
    finally:
        await st.close()
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

"""The whole system as users run it: ``kjs scheduler``, ``kjs worker`` and ``kjs api`` as
subprocesses, on the real broker and Postgres, with a local HTTP target that records calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from cryptography.fernet import Fernet

from core.settings import LANES, KafkaSettings
from tests.conftest import RUN_ID
from tests.waiting import eventually
from topics.catalog import Catalog

QUOTA_ACTIVE_TENANT = f"qa-{RUN_ID}"
QUOTA_RATE_TENANT = f"qr-{RUN_ID}"
QUOTA_DAILY_TENANT = f"qd-{RUN_ID}"
QUOTA_PAYLOAD_TENANT = f"qp-{RUN_ID}"
SECRET_KEY = Fernet.generate_key().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Hit:
    name: str
    at: datetime
    headers: dict[str, str]
    body: bytes


@dataclass
class Target:
    """A local HTTP server standing in for a user's endpoint."""

    base_url: str
    hits: list[Hit] = field(default_factory=list)
    # Scripted answers per hook name, used in order; then 200 (after ``slow`` seconds).
    script: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    # Hooks that answer with what they were sent (headers and body), as a careless echo
    # endpoint would: what the worker keeps of the answer must not reveal a secret.
    echo: set[str] = field(default_factory=set)

    def answer(self, name: str, *replies: tuple[int, dict[str, str]]) -> None:
        self.script[name] = list(replies)

    def answer_slowly(self, name: str, seconds: float) -> None:
        self.slow[name] = seconds

    def url(self, name: str) -> str:
        return f"{self.base_url}/hook/{name}"

    def calls(self, name: str) -> list[Hit]:
        return [h for h in self.hits if h.name == name]


@pytest.fixture(scope="session")
async def target() -> AsyncIterator[Target]:
    port = free_port()
    tgt = Target(f"http://127.0.0.1:{port}")

    async def hook(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        tgt.hits.append(Hit(name, datetime.now(UTC), dict(request.headers), await request.read()))
        if name in tgt.slow:
            await asyncio.sleep(tgt.slow[name])  # the slow target being simulated
        sent = {"headers": dict(request.headers), "body": (await request.read()).decode()}
        answer = sent if name in tgt.echo else {}
        replies = tgt.script.get(name)
        if replies:
            status, headers = replies.pop(0)
            return web.json_response({"ok": False, **answer}, status=status, headers=headers)
        return web.json_response({"ok": True, **answer})

    app = web.Application()
    app.router.add_route("*", "/hook/{name}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield tgt
    await runner.cleanup()


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        # The child inherits its own copy of the descriptor; ours is closed at once.
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdout=log, stderr=log
            )

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return f"--- {self.name} ---\n" + "\n".join(text[-lines:])


@dataclass
class Stack:
    api_url: str
    env: dict[str, str]
    catalog: Catalog
    pool: asyncpg.Pool
    processes: dict[str, Process]
    http: aiohttp.ClientSession
    # The ops server (/metrics, /healthz, /readyz) of the scheduler and of each worker.
    metrics_urls: dict[str, str] = field(default_factory=dict)

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(f"{self.api_url}/v1/jobs", json=body) as resp:
            payload: dict[str, Any] = await resp.json()
            assert resp.status == 202, payload
            return payload

    async def job(self, job_id: str) -> dict[str, Any] | None:
        async with self.http.get(f"{self.api_url}/v1/jobs/{job_id}") as resp:
            if resp.status == 404:
                return None
            assert resp.status == 200
            job: dict[str, Any] = await resp.json()
            return job

    async def wait_status(
        self, job_id: str, status: str, timeout_s: float = 30.0
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            job = await self.job(job_id)
            return job if job is not None and job["status"] == status else None

        return await eventually(probe, timeout_s, what=f"job {job_id} to be {status}")

    async def executions(self, job_id: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.api_url}/v1/jobs/{job_id}/executions") as resp:
            assert resp.status == 200
            body = await resp.json()
            return list(body["executions"])

    async def command(self, command: dict[str, Any]) -> None:
        """Produce a command to jobs.commands as any Kafka client would (murmur2 key)."""
        from topics.producer import durable_producer

        producer = durable_producer(KafkaSettings(kafka_bootstrap=self.env["KJS_KAFKA_BOOTSTRAP"]))
        await producer.start()
        try:
            await producer.send_and_wait(
                self.catalog.commands.name,
                json.dumps(command).encode(),
                # A create names its tenant inside the job; the others at the top.
                key=(command.get("user_id") or command["job"]["user_id"]).encode(),
            )
        finally:
            await producer.stop()

    async def restart(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.processes[name]
        await proc.stop(sig)
        await proc.start()

    async def wait_shards_owned(self, since: datetime) -> None:
        partitions = self.catalog.commands.partitions

        async def probe() -> bool:
            n = await self.pool.fetchval(
                "SELECT count(*) FROM kjs_shards WHERE assigned_at >= $1", since
            )
            return bool(n == partitions)

        await eventually(probe, 60, what="the scheduler to own every shard")


@pytest.fixture(scope="session")
async def stack(
    database_url: str,
    pool: asyncpg.Pool,
    topic_catalog: Catalog,
    kafka_settings: KafkaSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    logs = tmp_path_factory.mktemp("stack-logs")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
    env.update(
        KJS_KAFKA_BOOTSTRAP=kafka_settings.kafka_bootstrap,
        KJS_NAMESPACE=kafka_settings.namespace,
        KJS_COMMAND_PARTITIONS=str(kafka_settings.command_partitions),
        KJS_DUE_PARTITIONS=str(kafka_settings.due_partitions),
        KJS_DATABASE_URL=database_url,
        KJS_API_PORT=str(port),
        # The local target runs on 127.0.0.1, which the SSRF guard refuses unless allowed.
        KJS_HTTP_ALLOWLIST='["127.0.0.1"]',
        # Two tenants with tight quotas (tests/acceptance/test_security.py); the rest unlimited.
        KJS_QUOTA_TIERS=json.dumps(
            {
                "two-active": {"active_jobs": 2},
                "slow": {"submissions_per_s": 0.001, "burst": 2},
                "two-a-day": {"executions_per_day": 2},
                "small": {"payload_bytes": 1000},
            }
        ),
        # Secrets in targets are sealed at rest with this key (core.secrets).
        KJS_SECRET_KEYS=json.dumps([SECRET_KEY]),
        # The console's pipeline page (tests/acceptance/browser) sees lag move within seconds.
        KJS_CONSOLE_LAG_INTERVAL_S="5",
        KJS_QUOTA_TENANT_TIERS=json.dumps(
            {
                QUOTA_ACTIVE_TENANT: "two-active",
                QUOTA_RATE_TENANT: "slow",
                QUOTA_DAILY_TENANT: "two-a-day",
                QUOTA_PAYLOAD_TENANT: "small",
            }
        ),
    )
    kjs = [sys.executable, "-m", "kjs.cli"]
    ops_ports = {name: free_port() for name in ["scheduler", *(f"worker-{lane}" for lane in LANES)]}
    metrics = {name: ["--metrics-port", str(p)] for name, p in ops_ports.items()}
    processes = {
        "scheduler": Process(
            "scheduler", [*kjs, "scheduler", *metrics["scheduler"]], env, logs / "scheduler.log"
        ),
        **{
            f"worker-{lane}": Process(
                f"worker-{lane}",
                [*kjs, "worker", "--lane", lane, *metrics[f"worker-{lane}"]],
                env,
                logs / f"{lane}.log",
            )
            for lane in LANES
        },
        "api": Process("api", [*kjs, "api"], env, logs / "api.log"),
    }
    started = datetime.now(UTC)
    for proc in processes.values():
        await proc.start()
    http = aiohttp.ClientSession()
    st = Stack(
        f"http://127.0.0.1:{port}",
        env,
        topic_catalog,
        pool,
        processes,
        http,
        {name: f"http://127.0.0.1:{p}" for name, p in ops_ports.items()},
    )
    try:
        await _wait_ready(st)
        await st.wait_shards_owned(started)
        yield st
    except BaseException:
        for proc in processes.values():
            print(proc.tail(), file=sys.stderr)
        raise
    finally:
        await http.close()
        await asyncio.gather(*(p.stop() for p in processes.values()))


async def _wait_ready(st: Stack) -> None:
    async def probe() -> bool:
        try:
            async with st.http.get(f"{st.api_url}/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    t0 = time.monotonic()
    await eventually(probe, 60, interval_s=0.2, what="the API to be ready")
    print(f"API ready after {time.monotonic() - t0:.1f}s", file=sys.stderr)


@pytest.fixture(autouse=True)
async def _authenticated(stack: Stack, user_id: str) -> AsyncIterator[None]:
    """Every acceptance test calls the API as its own tenant, with a key made as the CLI does."""
    from tests.conftest import make_api_key

    stack.http.headers["Authorization"] = f"Bearer {await make_api_key(stack.pool, user_id)}"
    yield
    stack.http.headers.pop("Authorization", None)

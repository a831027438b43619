"""The system as users run it: ``kjs`` processes on a real broker and Postgres, a recording
target, and what tests do to it and read from it.

One :class:`Stack` for both suites that run one. The acceptance tests share a session's stack
(one scheduler, a worker per lane and the API; ``tests/acceptance/conftest.py``) and talk to
it over HTTP; the fault tests start one per scenario (``tests/faults/conftest.py``), submit
spread jobs over Kafka, hurt a process and compare the target's record of calls with what was
submitted (:class:`Report`).
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
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaProducer

from core.settings import KafkaSettings
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually
from topics.catalog import Catalog
from topics.producer import durable_producer

# More jobs per fault scenario over the same time span, for the soak (bench/soak.py); 1 in CI.
SCALE = int(os.environ.get("FAULT_SCALE", "1"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.name} ---\n" + "\n".join(self.log().splitlines()[-lines:])


@dataclass
class Submitted:
    job_id: str
    name: str
    at: datetime


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
class Stack:
    env: dict[str, str]
    catalog: Catalog
    pool: asyncpg.Pool
    processes: dict[str, Process]
    target: RecordingTarget
    # A fault scenario's name (the prefix of its jobs' and tenants' names).
    name: str = ""
    # The API, when the stack runs one (the client's Authorization is the test's to set).
    api_url: str = ""
    http: aiohttp.ClientSession | None = None
    # The ops server (/metrics, /healthz, /readyz) of the scheduler and of each worker.
    metrics_urls: dict[str, str] = field(default_factory=dict)
    # What a fault scenario submitted, for the report.
    jobs: list[Submitted] = field(default_factory=list)
    producer: AIOKafkaProducer | None = None

    @property
    def bootstrap(self) -> str:
        return self.env["KJS_KAFKA_BOOTSTRAP"]

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    def dump_logs(self, lines: int = 60) -> None:
        for proc in self.processes.values():
            print(proc.tail(lines), file=sys.stderr)

    # --- commands over Kafka ----------------------------------------------------------------

    async def produce(self, key: str, value: bytes) -> tuple[int, int]:
        """Produce to jobs.commands as any client would (murmur2 key); (partition, offset)."""
        if self.producer is None:
            self.producer = durable_producer(KafkaSettings(kafka_bootstrap=self.bootstrap))
            await self.producer.start()
        md = await self.producer.send_and_wait(self.catalog.commands.name, value, key=key.encode())
        return int(md.partition), int(md.offset)

    async def command(self, command: dict[str, Any]) -> None:
        """Produce a command, keyed by its tenant (a create names it inside the job)."""
        user_id = command.get("user_id") or command["job"]["user_id"]
        await self.produce(user_id, json.dumps(command).encode())

    # --- the API ----------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        assert self.http is not None and self.api_url, "this stack runs no API"
        return self.http

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self._client().post(f"{self.api_url}/v1/jobs", json=body) as resp:
            payload: dict[str, Any] = await resp.json()
            assert resp.status == 202, payload
            return payload

    async def job(self, job_id: str) -> dict[str, Any] | None:
        async with self._client().get(f"{self.api_url}/v1/jobs/{job_id}") as resp:
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
        async with self._client().get(f"{self.api_url}/v1/jobs/{job_id}/executions") as resp:
            assert resp.status == 200
            body = await resp.json()
            return list(body["executions"])

    # --- processes and shards ---------------------------------------------------------------

    async def restart(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.processes[name]
        await proc.stop(sig)
        await proc.start()

    async def wait_shards_owned(self, since: datetime) -> None:
        """Until every shard was (re)assigned since ``since``."""
        partitions = self.catalog.commands.partitions

        async def probe() -> bool:
            n = await self.pool.fetchval(
                "SELECT count(*) FROM kjs_shards WHERE assigned_at >= $1", since
            )
            return bool(n == partitions)

        await eventually(probe, 60, what="the scheduler to own every shard")

    async def shard_owners(self) -> dict[int, str]:
        rows = await self.pool.fetch("SELECT shard, owner FROM kjs_shards")
        return {int(r["shard"]): str(r["owner"]) for r in rows}

    async def shard_epochs(self) -> dict[int, int]:
        rows = await self.pool.fetch("SELECT shard, epoch FROM kjs_shards")
        return {int(r["shard"]): int(r["epoch"]) for r in rows}

    async def wait_owners(self, want: set[str], timeout_s: float = 60) -> dict[int, str]:
        """Until the shards are owned by exactly the schedulers ``want`` (ids s1, s2, ...)."""

        async def probe() -> dict[int, str] | None:
            owners = await self.shard_owners()
            complete = len(owners) == self.catalog.commands.partitions
            return owners if complete and set(owners.values()) == want else None

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

    # --- fault scenarios: spread one-time jobs, then compare the target's calls -------------

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
            return names <= {h.name for h in self.target.hits}

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
            if len(self.target.hits) != seen:
                seen, since = len(self.target.hits), time.monotonic()
            return time.monotonic() - since >= seconds

        await eventually(probe, seconds * 4 + 30, interval_s=0.1, what="a quiet target")

    async def report(self, scenario: str, recovery_s: float | None = None) -> Report:
        fired = await self.pool.fetchval(
            "SELECT count(DISTINCT job_id) FROM kjs_executions WHERE job_id = ANY($1::uuid[])",
            [uuid.UUID(j.job_id) for j in self.jobs],
        )
        keys = self.target.keys()
        first = {h.name: h.at for h in reversed(self.target.hits)}
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

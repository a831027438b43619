"""SIGTERM to a real ``kjs worker`` process: in-flight work drains, or is reported interrupted."""

# The harness's fixtures are imported by name, which pyflakes reads as unused imports and
# their parameters as redefinitions.
# ruff: noqa: F401, F811

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from core.settings import KafkaSettings
from tests.integration.worker_harness import (
    TopicReader,
    cat,
    committed,
    committed_offset,
    due_event,
    http_target,
    insert_execution,
    insert_job,
    lane_kafka,
    producer,
    result_for,
    results,
    send_due,
    shard_of,
)
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually
from topics.catalog import Catalog

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    async def wait_for_line(self, text: str) -> None:
        async def seen() -> bool | None:
            return True if self.said(text) else None

        await eventually(seen, what=f"the worker to log {text!r}")


StartProcess = Callable[[float], Awaitable[WorkerProcess]]


@pytest.fixture
async def worker_process(
    lane_kafka: KafkaSettings, database_url: str
) -> AsyncIterator[StartProcess]:
    """``python -m kjs.cli worker --lane normal`` with its settings in the environment; its
    log is collected as it comes, so the pipe never fills."""
    started: list[tuple[WorkerProcess, asyncio.Task[None]]] = []

    async def start(drain_s: float) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
        env |= {
            "KJS_KAFKA_BOOTSTRAP": lane_kafka.kafka_bootstrap,
            "KJS_NAMESPACE": lane_kafka.namespace,
            "KJS_COMMAND_PARTITIONS": str(lane_kafka.command_partitions),
            "KJS_DUE_PARTITIONS": str(lane_kafka.due_partitions),
            "KJS_DATABASE_URL": database_url,
            "KJS_WORKER_ID": "shutdown-test",
            # The local target runs on 127.0.0.1, which the SSRF guard refuses unless allowed.
            "KJS_HTTP_ALLOWLIST": '["127.0.0.1"]',
            "KJS_WORKER_DRAIN_S": str(drain_s),
            # The session's database is shared: this worker must not prune other tests' rows.
            "KJS_EXECUTION_RETENTION_DAYS": "0",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kjs.cli",
            "worker",
            "--lane",
            "normal",
            cwd=REPO,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        worker = WorkerProcess(proc)
        started.append((worker, asyncio.create_task(_collect(worker))))
        await worker.wait_for_line("partitions assigned")
        return worker

    yield start
    for worker, collector in started:
        if worker.proc.returncode is None:
            worker.proc.kill()
            await worker.proc.wait()
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector


async def _collect(worker: WorkerProcess) -> None:
    assert worker.proc.stderr is not None
    while line := await worker.proc.stderr.readline():
        worker.lines.append(line.decode(errors="replace"))


async def test_sigterm_lets_in_flight_work_finish_then_commits_and_exits(
    worker_process: StartProcess,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    committed: Callable[[int, int], Awaitable[None]],
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    worker = await worker_process(30.0)
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    execution = await insert_execution(pool, job_id, user_id, shard, datetime.now(UTC))
    http_target.gate.clear()
    sent = await send_due(producer, cat, due_event(execution, http_target.url()))

    async def request_open() -> bool | None:
        return True if http_target.open_requests == 1 else None

    await eventually(request_open, what="the target to be called")
    worker.proc.send_signal(signal.SIGTERM)
    await worker.wait_for_line("in-flight records")  # draining, no longer fetching
    assert worker.proc.returncode is None
    http_target.gate.set()

    assert await asyncio.wait_for(worker.proc.wait(), timeout=30) == 0
    _, result = await result_for(results, execution.execution_id)
    assert result.status == "succeeded"
    await committed(sent.partition, sent.offset)
    assert not worker.said("interrupted execution")
    assert worker.said("worker shutdown-test stopped")


async def test_work_cut_off_by_the_drain_deadline_is_named_and_reported_interrupted(
    worker_process: StartProcess,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    cat: Catalog,
    lane_kafka: KafkaSettings,
    results: TopicReader,
    http_target: RecordingTarget,
    user_id: str,
) -> None:
    worker = await worker_process(0.5)
    shard = shard_of(user_id, lane_kafka)
    job_id = await insert_job(pool, user_id, shard, http_target.url())
    execution = await insert_execution(pool, job_id, user_id, shard, datetime.now(UTC))
    http_target.gate.clear()
    sent = await send_due(producer, cat, due_event(execution, http_target.url()))

    async def request_open() -> bool | None:
        return True if http_target.open_requests == 1 else None

    await eventually(request_open, what="the target to be called")
    worker.proc.send_signal(signal.SIGTERM)

    assert await asyncio.wait_for(worker.proc.wait(), timeout=30) == 0
    assert worker.said(f"interrupted execution {execution.execution_id}")
    _, result = await result_for(results, execution.execution_id)
    assert (result.status, result.retryable) == ("failed", True)
    assert result.error is not None and result.error.startswith("interrupted")
    assert await committed_offset(lane_kafka, cat, sent.partition) <= sent.offset

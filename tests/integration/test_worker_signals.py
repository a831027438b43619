"""``workers.main.run`` as ``kjs worker`` runs it: settings from the environment, and a clean
exit on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from core.settings import KafkaSettings
from topics.admin import create_topics
from topics.catalog import catalog

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
ENTRY = (
    "import asyncio, logging\n"
    "logging.basicConfig(level=logging.INFO)\n"
    "from workers.main import run\n"
    "asyncio.run(run('normal'))\n"
)


async def read_until(stream: asyncio.StreamReader, marker: str, timeout_s: float) -> str:
    """Collect the stream's lines until one contains ``marker``; fail at the deadline."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"no {marker!r} within {timeout_s:.0f} s; output:\n" + "".join(seen))
        try:
            line = (await asyncio.wait_for(stream.readline(), remaining)).decode()
        except TimeoutError:
            continue
        if not line:
            pytest.fail(f"output ended before {marker!r}:\n" + "".join(seen))
        seen.append(line)
        if marker in line:
            return "".join(seen)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_the_worker_process_stops_cleanly_on_a_signal(
    signum: signal.Signals, services: None, database_url: str, kafka_settings: KafkaSettings
) -> None:
    namespace = f"{kafka_settings.namespace}s{uuid.uuid4().hex[:8]}."
    settings = kafka_settings.model_copy(update={"namespace": namespace})
    await create_topics(settings, catalog(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
    env |= {
        "KJS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "KJS_NAMESPACE": namespace,
        "KJS_COMMAND_PARTITIONS": str(settings.command_partitions),
        "KJS_DUE_PARTITIONS": str(settings.due_partitions),
        "KJS_DATABASE_URL": database_url,
        "KJS_WORKER_ID": "signal-test",
        # The local target runs on 127.0.0.1, which the SSRF guard refuses unless allowed.
        "KJS_HTTP_ALLOWLIST": '["127.0.0.1"]',
        # The session's database is shared: this worker must not prune other tests' rows.
        "KJS_EXECUTION_RETENTION_DAYS": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, cwd=REPO, env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        await read_until(proc.stderr, "worker signal-test consuming", timeout_s=30)
        proc.send_signal(signum)
        await read_until(proc.stderr, "worker signal-test stopped", timeout_s=30)
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

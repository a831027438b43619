"""``api.main.run`` as ``kjs api`` runs it: settings from the environment, clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import aiohttp
import pytest

from core.settings import KafkaSettings
from topics.catalog import Catalog

pytestmark = pytest.mark.services

_ENTRY = "import asyncio, api.main; asyncio.run(api.main.run())"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _wait_ready(
    session: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process
) -> None:
    async with asyncio.timeout(30):
        while True:
            assert proc.returncode is None, "the API exited during start-up"
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)  # poll interval under the deadline above


async def test_run_serves_from_environment_settings_and_stops_on_sigterm(
    database_url: str,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
    auth_headers: dict[str, str],
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "KJS_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "KJS_NAMESPACE": kafka_settings.namespace,
        "KJS_COMMAND_PARTITIONS": str(kafka_settings.command_partitions),
        "KJS_DATABASE_URL": database_url,
        "KJS_API_HOST": "127.0.0.1",
        "KJS_API_PORT": str(port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _ENTRY, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(headers=auth_headers) as session:
            await _wait_ready(session, f"{base}/readyz", proc)
            body = {
                "user_id": user_id,
                "name": "from-main",
                "schedule": {"type": "interval", "every_seconds": 60},
                "target": {"type": "kafka", "topic": "out"},
            }
            async with session.post(f"{base}/v1/jobs", json=body) as resp:
                assert resp.status == 202, await resp.text()

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

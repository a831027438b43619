"""``kjs lag`` as a subprocess: one-shot table and JSON, --watch, and --serve."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from core.settings import KafkaSettings
from tests.support.waiting import eventually
from topics.admin import create_topics
from topics.catalog import Catalog, catalog

pytestmark = pytest.mark.services

KJS = str(Path(sys.executable).with_name("kjs"))


@pytest.fixture(scope="module")
async def installation(services: None) -> tuple[dict[str, str], Catalog]:
    """A namespace whose normal lane has 6 hour-old records and a group committed at 2."""
    settings = KafkaSettings(
        namespace=f"lagc{uuid.uuid4().hex[:10]}.", command_partitions=1, due_partitions=1
    )
    cat = catalog(settings)
    await create_topics(settings, cat)
    topic = cat.due["normal"].name
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        hour_ago_ms = int((time.time() - 3600) * 1000)
        for _ in range(6):
            await producer.send_and_wait(topic, b"x", partition=0, timestamp_ms=hour_ago_ms)
    finally:
        await producer.stop()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    group = cat.worker_group("normal")
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 2)])
    await asyncio.wrap_future(admin.alter_consumer_group_offsets([request])[group])
    env = {
        **os.environ,
        "KJS_NAMESPACE": settings.namespace,
        "KJS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
    }
    return env, cat


async def kjs_lag(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        KJS, "lag", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_json_lists_every_kjs_group(installation: tuple[dict[str, str], Catalog]) -> None:
    env, cat = installation
    doc = json.loads(await kjs_lag(env, "--json", "--samples", "1"))
    groups = {g["group"]: g for g in doc["groups"]}
    assert set(groups) == {
        cat.scheduler_group,
        *(cat.worker_group(lane) for lane in ("critical", "normal", "low")),
    }
    normal = groups[cat.worker_group("normal")]
    assert normal["status"] == "STOP" and normal["lag"] == 4
    (partition,) = normal["partitions"]
    assert partition["committed"] == 2 and partition["end"] == 6
    assert doc["thresholds"] == {"window": 10, "min_samples": 3, "stop_after_s": 120.0}


async def test_table_for_a_named_group(installation: tuple[dict[str, str], Catalog]) -> None:
    env, cat = installation
    group = cat.worker_group("normal")
    text = await kjs_lag(
        env, "--no-kjs-groups", "--group", group, "--samples", "2", "--interval", "0.1"
    )
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["GROUP", "TOPIC", "PART"]
    assert lines[1].split()[:8] == [
        group,
        cat.due["normal"].name,
        "0",
        "2",
        "6",
        "4",
        "1h00m",
        "STOP",
    ]
    assert cat.scheduler_group not in text
    assert "status over 2 sample(s), 0.1s apart" in text


async def test_watch_streams_json_until_interrupted(
    installation: tuple[dict[str, str], Catalog],
) -> None:
    env, _ = installation
    proc = await asyncio.create_subprocess_exec(
        KJS, "lag", "--watch", "0.2", "--json", env=env, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        docs = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 30)) for _ in range(3)]
        assert [d["samples"] for d in docs] == [1, 2, 3]
    finally:
        proc.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(proc.wait(), 30)
    assert rc == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_exports_until_terminated(
    installation: tuple[dict[str, str], Catalog],
) -> None:
    env, cat = installation
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        KJS, "lag", "--serve", "--port", str(port), "--interval", "0.2", env=env
    )
    needle = f'kjs_consumer_lag_messages{{group="{cat.worker_group("normal")}"'

    async def lag_line() -> str | None:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/metrics") as resp,
            ):
                text = await resp.text()
        except aiohttp.ClientConnectionError:
            return None
        return next((line for line in text.splitlines() if line.startswith(needle)), None)

    try:
        line = await eventually(lag_line, timeout_s=30, what="the exporter's lag gauge")
        assert line.endswith(" 4.0")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 30)
    assert rc == 0

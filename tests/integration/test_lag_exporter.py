"""The lag exporter on the real broker: scrape it, parse it, lint it with promtool."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from core.settings import KafkaSettings
from lag.exporter import LagExporter
from lag.groups import monitored_groups
from lag.metrics import EXPORTER_METRICS
from lag.monitor import LagMonitor
from lag.read import LagReader
from tests.support.waiting import eventually
from topics.admin import create_topics
from topics.catalog import Catalog, catalog

pytestmark = pytest.mark.services

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
async def lane(services: None) -> tuple[KafkaSettings, Catalog]:
    """A fresh namespace whose normal lane has 6 records, an hour old, committed up to 2."""
    settings = KafkaSettings(
        namespace=f"lagx{uuid.uuid4().hex[:10]}.", command_partitions=1, due_partitions=1
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
    return settings, cat


@pytest.fixture
async def exporter(lane: tuple[KafkaSettings, Catalog]) -> AsyncIterator[str]:
    settings, _ = lane
    monitor = LagMonitor(LagReader(settings), monitored_groups(settings))
    exp = LagExporter(monitor, "127.0.0.1", 0, interval_s=0.2)
    port = await exp.start()
    stop = asyncio.Event()
    task = asyncio.create_task(exp.run(stop))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def scrape(base: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()


def series(text: str) -> Series:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_exporter_serves_the_lag_of_every_group(
    lane: tuple[KafkaSettings, Catalog], exporter: str
) -> None:
    _, cat = lane
    group, topic = cat.worker_group("normal"), cat.due["normal"].name

    async def healthy() -> bool:
        async with aiohttp.ClientSession() as session, session.get(f"{exporter}/healthz") as r:
            return r.status == 200

    await eventually(healthy, timeout_s=30, what="the exporter's first sample")
    got = series(await scrape(exporter))
    part = (("group", group), ("partition", "0"), ("topic", topic))
    assert got[("kjs_consumer_lag_messages", part)] == 4
    assert got[("kjs_consumer_group_committed_offset", part)] == 2
    assert got[("kjs_consumer_lag_seconds", part)] >= 3600
    assert got[("kjs_consumer_group_status", (("group", group), ("status", "STOP")))] == 1
    assert got[("kjs_consumer_group_members", (("group", group),))] == 0
    assert got[("kjs_lane_workers_needed", (("group", group),))] == 1
    assert got[("kjs_topic_partitions", (("topic", topic),))] == 1
    # The lane nobody committed on, and which is empty, is there too, caught up.
    low = (("group", cat.worker_group("low")), ("partition", "0"))
    low_part = (*low, ("topic", cat.due["low"].name))
    assert got[("kjs_consumer_lag_messages", low_part)] == 0
    assert ("kjs_consumer_group_committed_offset", low_part) not in got
    exported = {name for name, _ in got}
    for metric in EXPORTER_METRICS:
        assert metric.name in exported, metric.name

    async def sampled_again() -> bool:
        return series(await scrape(exporter))[("kjs_lag_exporter_samples_total", ())] >= 3

    await eventually(sampled_again, timeout_s=30, what="the exporter sampling in the background")


async def test_exporter_output_passes_promtool_lint(exporter: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: apt-get install prometheus"

    async def sampled() -> str | None:
        text = await scrape(exporter)
        return text if "kjs_consumer_lag_messages{" in text else None

    text = await eventually(sampled, timeout_s=30, what="a sample")
    proc = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(text.encode()), 60)
    assert proc.returncode == 0, out.decode()
    assert out.decode().strip() == "", out.decode()

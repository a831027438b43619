"""The lag monitor against real groups on the real broker, and against Kafka's own tool.

Fresh topics (a kjs namespace with a uuid) and fresh groups, with known records and known
committed offsets:

- ``kjs-workers-low`` never committed (its topic has records an hour old, nobody consumes);
- ``kjs-workers-critical`` is caught up;
- ``kjs-workers-normal`` is stopped: committed behind, no members, no further commits;
- ``busy``, a group of our own on a topic of our own, has a live member that commits while
  records keep arriving (WARN), then stops committing (STALL), catches up (OK) and moves its
  offset back (REWIND).

The offset lag is compared with ``kafka-consumer-groups --describe`` from the broker's own
release (``org.apache.kafka.tools.consumer.group.ConsumerGroupCommand``, kafka-tools).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from core.settings import InfraSettings, KafkaSettings
from infra.paths import Layout
from infra.process import find_tool
from lag.groups import monitored_groups
from lag.monitor import GroupReport, LagMonitor, LagReport, PartitionReport
from lag.read import LagReader
from lag.status import Status, Thresholds
from tests.support.waiting import eventually
from topics.admin import create_topics
from topics.catalog import Catalog, catalog

pytestmark = pytest.mark.services

HOUR_AGO_MS = int((time.time() - 3600) * 1000)
STEP_MS = 10_000  # records of one partition are 10 s apart, so a wrong record is obvious
Key = tuple[str, int]


@dataclass(frozen=True)
class World:
    settings: KafkaSettings
    cat: Catalog
    admin: AdminClient

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap


def ts_ms(offset: int) -> int:
    return HOUR_AGO_MS + offset * STEP_MS


async def produce(bootstrap: str, topic: str, counts: Mapping[int, int], old: bool) -> None:
    """``counts[p]`` records to partition p. With ``old``, the partition must be new: record k
    is then at offset k, an hour old plus k * 10 s (``ts_ms(k)``)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, count in counts.items():
            for k in range(count):
                await producer.send_and_wait(
                    topic,
                    f"r{k}".encode(),
                    partition=partition,
                    timestamp_ms=ts_ms(k) if old else None,
                )
    finally:
        await producer.stop()


async def commit_offsets(admin: AdminClient, group: str, offsets: Mapping[Key, int]) -> None:
    """Commit offsets for a group with no members (what a consumer that then quit leaves)."""
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
    )
    futures = admin.alter_consumer_group_offsets([request])
    await asyncio.wrap_future(futures[group])


@pytest.fixture(scope="module")
async def world(services: None) -> World:
    settings = KafkaSettings(
        namespace=f"lag{uuid.uuid4().hex[:10]}.", command_partitions=2, due_partitions=2
    )
    cat = catalog(settings)
    await create_topics(settings, cat)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    low, critical, normal = (cat.due[lane].name for lane in ("low", "critical", "normal"))
    await produce(settings.kafka_bootstrap, low, {0: 3}, old=True)
    await produce(settings.kafka_bootstrap, critical, {0: 4, 1: 2}, old=False)
    await produce(settings.kafka_bootstrap, normal, {0: 10, 1: 5}, old=True)
    await commit_offsets(admin, cat.worker_group("critical"), {(critical, 0): 4, (critical, 1): 2})
    await commit_offsets(admin, cat.worker_group("normal"), {(normal, 0): 4, (normal, 1): 0})
    return World(settings, cat, admin)


def rows(report: LagReport, group: str) -> tuple[GroupReport, dict[Key, PartitionReport]]:
    (g,) = [g for g in report.groups if g.group == group]
    return g, {(p.topic, p.partition): p for p in g.partitions}


# --- Kafka's own tool --------------------------------------------------------------------


@dataclass(frozen=True)
class ToolRow:
    current: int | None
    end: int
    lag: int | None
    consumer: str


def kafka_tools_classpath() -> str:
    infra = InfraSettings()
    libs = Layout.of(infra).kafka_libs(infra.kafka_version)
    jar = libs / f"kafka-tools-{infra.kafka_version}.jar"
    assert jar.exists(), (
        f"{jar} is missing: infra/kafka/pom.xml lists kafka-tools; re-resolve the jars "
        f"(python -m infra down; rm -rf {libs}; python -m infra up)"
    )
    return f"{libs}/*"


async def kafka_describe(bootstrap: str, group: str) -> tuple[dict[Key, ToolRow], str]:
    """``kafka-consumer-groups --describe --group G``: its rows by (topic, partition)."""
    proc = await asyncio.create_subprocess_exec(
        find_tool("java", "JAVA_HOME"),
        "-cp",
        kafka_tools_classpath(),
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "--bootstrap-server",
        bootstrap,
        "--describe",
        "--group",
        group,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    found: dict[Key, ToolRow] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        cells = line.split()
        if cells[:3] == ["GROUP", "TOPIC", "PARTITION"]:
            header = cells
            continue
        if header is None or len(cells) < 6 or cells[0] != group:
            continue
        col = dict(zip(header, cells, strict=False))

        def num(name: str, col: dict[str, str] = col) -> int | None:
            return None if col[name] == "-" else int(col[name])

        end = num("LOG-END-OFFSET")
        assert end is not None, line
        row = ToolRow(num("CURRENT-OFFSET"), end, num("LAG"), col.get("CONSUMER-ID", "-"))
        found[(col["TOPIC"], int(col["PARTITION"]))] = row
    return found, text


async def assert_agrees_with_kafka(world: World, report: LagReport, group: str) -> None:
    tool, text = await kafka_describe(world.bootstrap, group)
    assert tool, f"Kafka's tool shows no partition of {group}:\n{text}"
    _, ours = rows(report, group)
    for key, theirs in tool.items():
        assert key in ours, f"{key} in Kafka's output but not ours:\n{text}"
        mine = ours[key]
        assert mine.end == theirs.end, (key, text)
        assert mine.committed == theirs.current, (key, text)
        if theirs.lag is not None:
            assert mine.lag == theirs.lag, (key, text)
    # What Kafka leaves out is what was never committed; ours counts it from the log start.
    for key, mine in ours.items():
        if key not in tool:
            assert mine.committed is None
            assert mine.lag == (mine.end or 0) - (mine.start or 0)


# --- the static groups -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def report(world: World) -> LagReport:
    monitor = LagMonitor(LagReader(world.settings), monitored_groups(world.settings))
    return await monitor.sample()


async def test_group_that_never_committed_shows_its_lag_from_the_log_start(
    world: World, report: LagReport
) -> None:
    topic = world.cat.due["low"].name
    group, parts = rows(report, world.cat.worker_group("low"))
    p0, p1 = parts[(topic, 0)], parts[(topic, 1)]
    assert (p0.committed, p0.start, p0.end, p0.lag) == (None, 0, 3, 3)
    # The record it waits on is the first one, an hour old: read, not interpolated.
    assert p0.time_lag_s == pytest.approx(report.at - ts_ms(0) / 1000, abs=0.01)
    assert p0.status is Status.STOP and "no members" in p0.reason
    assert (p1.committed, p1.lag, p1.time_lag_s, p1.status) == (None, 0, 0.0, Status.OK)
    assert (group.status, group.members, group.lag, group.workers_needed) == (
        Status.STOP,
        0,
        3,
        1,
    )


async def test_caught_up_group(world: World, report: LagReport) -> None:
    topic = world.cat.due["critical"].name
    group, parts = rows(report, world.cat.worker_group("critical"))
    assert {k: (p.committed, p.end, p.lag, p.time_lag_s) for k, p in parts.items()} == {
        (topic, 0): (4, 4, 0, 0.0),
        (topic, 1): (2, 2, 0, 0.0),
    }
    assert group.status is Status.OK
    assert group.reason == "all 2 partitions OK"


async def test_stopped_group(world: World, report: LagReport) -> None:
    topic = world.cat.due["normal"].name
    group, parts = rows(report, world.cat.worker_group("normal"))
    p0, p1 = parts[(topic, 0)], parts[(topic, 1)]
    assert (p0.committed, p0.end, p0.lag) == (4, 10, 6)
    assert (p1.committed, p1.end, p1.lag) == (0, 5, 5)
    # Time lag is measured on the record AT the committed offset (records are 10 s apart).
    assert p0.time_lag_s == pytest.approx(report.at - ts_ms(4) / 1000, abs=0.01)
    assert p1.time_lag_s == pytest.approx(report.at - ts_ms(0) / 1000, abs=0.01)
    assert p0.status is Status.STOP and p1.status is Status.STOP
    assert group.status is Status.STOP
    assert group.time_lag_s == p1.time_lag_s


async def test_quiet_scheduler_group_is_ok_not_missing(world: World, report: LagReport) -> None:
    group, parts = rows(report, world.cat.scheduler_group)
    assert sorted(parts) == sorted(
        (t, p) for t in (world.cat.commands.name, world.cat.results.name) for p in (0, 1)
    )
    assert all(p.committed is None and p.lag == 0 for p in parts.values())
    assert group.status is Status.OK and group.state == "DEAD"


async def test_offset_lag_agrees_with_kafka_consumer_groups(
    world: World, report: LagReport
) -> None:
    for lane in ("critical", "normal"):
        await assert_agrees_with_kafka(world, report, world.cat.worker_group(lane))


async def test_kafka_tool_has_nothing_for_the_group_that_never_committed(
    world: World, report: LagReport
) -> None:
    group = world.cat.worker_group("low")
    tool, text = await kafka_describe(world.bootstrap, group)
    assert tool == {} and "not found" in text
    _, ours = rows(report, group)
    assert sum(p.lag or 0 for p in ours.values()) == 3


async def test_named_group_that_does_not_exist_is_err(world: World) -> None:
    name = f"{world.settings.namespace}nobody"
    monitor = LagMonitor(LagReader(world.settings), {name: []})
    (group,) = (await monitor.sample()).groups
    assert group.status is Status.ERR and "no such group" in group.reason


async def test_unreachable_broker_is_err_on_every_group() -> None:
    reader = LagReader(KafkaSettings(kafka_bootstrap="127.0.0.1:1"), admin_timeout_s=1.0)
    monitor = LagMonitor(reader, {"g": ["t"]})
    (group,) = (await monitor.sample()).groups
    assert group.status is Status.ERR
    assert "cannot read" in group.reason


# --- a live group that commits -----------------------------------------------------------


@pytest.fixture
async def busy(world: World) -> AsyncIterator[tuple[str, str, AIOKafkaConsumer]]:
    topic = f"{world.settings.namespace}work"
    group = f"{world.settings.namespace}busy"
    created = world.admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    await asyncio.wrap_future(created[topic])
    await produce(world.bootstrap, topic, {0: 5, 1: 5}, old=False)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=world.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:

        async def assigned() -> bool:
            return len(consumer.assignment()) == 2

        await eventually(assigned, timeout_s=30, what="the member's assignment")
        yield topic, group, consumer
    finally:
        await consumer.stop()


async def test_group_committing_while_behind(
    world: World, busy: tuple[str, str, AIOKafkaConsumer]
) -> None:
    topic, group, consumer = busy
    tps = [AioTopicPartition(topic, p) for p in (0, 1)]
    th = Thresholds(window=3, min_samples=3, stop_after_s=120.0)
    monitor = LagMonitor(LagReader(world.settings), {group: []}, th)

    async def commit(offset: int) -> None:
        await consumer.commit({tp: offset for tp in tps})

    # Committing, but records arrive faster: lag 8, 12, 16.
    reports = []
    for step in range(3):
        if step:
            await produce(world.bootstrap, topic, {0: 3, 1: 3}, old=False)
        await commit(1 + step)
        reports.append(await monitor.sample())
    g, parts = rows(reports[-1], group)
    assert [rows(r, group)[0].lag for r in reports] == [8, 12, 16]
    assert g.status is Status.WARN, g.reason
    assert all(p.status is Status.WARN for p in parts.values())
    assert (g.members, g.state) == (1, "STABLE")
    # 2 commits and 6 arrivals per partition per interval: 4 workers, capped at 2 partitions.
    assert g.workers_needed == 2
    await assert_agrees_with_kafka(world, reports[-1], group)
    tool, _ = await kafka_describe(world.bootstrap, group)
    assert all(row.consumer != "-" for row in tool.values())  # the live member is shown

    # No more commits, the lag stays: STALL (not STOP: the records are seconds old).
    for _ in range(3):
        report = await monitor.sample()
    g, _ = rows(report, group)
    assert g.status is Status.STALL, g.reason

    # Caught up but one record: the lag shrank, OK.
    await commit(10)
    g, parts = rows(await monitor.sample(), group)
    assert g.status is Status.OK, g.reason
    assert [p.lag for p in parts.values()] == [1, 1]

    # The offset moves back: REWIND.
    await commit(2)
    report = await monitor.sample()
    g, _ = rows(report, group)
    assert g.status is Status.REWIND, g.reason
    await assert_agrees_with_kafka(world, report, group)

"""The monitor's report, its table and JSON, and the exporter's gauges, from given readings.

The readings are built by hand here (the real ones come from Kafka in
tests/integration/test_lag_groups.py), so the assembly is checked figure by figure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lag.exporter import LagCollector
from lag.groups import kjs_group_topics, monitored_groups
from lag.monitor import LagMonitor, LagReport
from lag.read import GroupRead, LagRead, PartitionRead
from lag.render import as_json, duration, table
from lag.status import Status, Thresholds

T0 = 1_800_000_000.0


class ScriptedReader:
    """Hands out the given readings in order, then raises what it is told to."""

    def __init__(self, reads: Sequence[LagRead | Exception]) -> None:
        self.reads = list(reads)

    async def read(self, groups: Mapping[str, Sequence[str]]) -> LagRead:
        item = self.reads.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def lane_read(at: float, committed: int | None, end: int, members: int = 1) -> LagRead:
    rows = (
        PartitionRead("jobs.due.normal", 0, committed, 0, end, record_ts=at - 30.0),
        PartitionRead("jobs.due.normal", 1, 5, 0, 5),
    )
    return LagRead(
        at,
        (GroupRead("kjs-workers-normal", "STABLE", members, rows),),
        {"jobs.due.normal": 2},
    )


async def sample_all(reads: Sequence[LagRead | Exception], th: Thresholds) -> list[LagReport]:
    monitor = LagMonitor(ScriptedReader(reads), {"kjs-workers-normal": ["jobs.due.normal"]}, th)
    return [await monitor.sample() for _ in reads]


async def test_report_figures_per_partition_and_group() -> None:
    (report,) = await sample_all([lane_read(T0, 7, 10)], Thresholds())
    (group,) = report.groups
    p0, p1 = group.partitions
    assert (p0.committed, p0.start, p0.end, p0.lag, p0.time_lag_s) == (7, 0, 10, 3, 30.0)
    assert (p1.lag, p1.time_lag_s, p1.status) == (0, 0.0, Status.OK)
    assert (group.lag, group.time_lag_s, group.members, group.state) == (3, 30.0, 1, "STABLE")
    assert report.samples == 1


async def test_status_and_hint_come_from_the_window() -> None:
    reads = [lane_read(T0 + i, 10 * i, 10 * i + 3 + 5 * i) for i in range(3)]
    reports = await sample_all(reads, Thresholds())
    group = reports[-1].groups[0]
    assert group.partitions[0].status is Status.WARN  # lag 3, 8, 13 while committing
    assert group.status is Status.WARN
    assert group.consumed_per_s == 10.0 and group.produced_per_s == 15.0
    # Lag 13 drained within 60 s plus 15/s arriving, at 10/s per member: 2 members.
    assert group.workers_needed == 2


async def test_never_committed_partition_reports_none_not_zero() -> None:
    (report,) = await sample_all([lane_read(T0, None, 4, members=0)], Thresholds())
    p0 = report.groups[0].partitions[0]
    assert p0.committed is None and p0.lag == 4 and p0.time_lag_s == 30.0
    assert report.groups[0].workers_needed == 1


async def test_a_failed_read_turns_every_known_partition_err() -> None:
    reads: list[LagRead | Exception] = [lane_read(T0, 7, 10), ConnectionError("broker down")]
    reports = await sample_all(reads, Thresholds())
    group = reports[-1].groups[0]
    assert group.status is Status.ERR
    assert "broker down" in group.reason
    assert [p.status for p in group.partitions] == [Status.ERR, Status.ERR]
    assert all(p.lag is None for p in group.partitions)


async def test_a_group_error_is_err_even_with_readable_partitions() -> None:
    read = lane_read(T0, 7, 10)
    g = read.groups[0]
    broken = LagRead(T0, (GroupRead(g.group, g.state, None, g.partitions, ("describe: x",)),))
    (report,) = await sample_all([broken], Thresholds())
    assert report.groups[0].status is Status.ERR
    assert report.groups[0].partitions[0].lag == 3


async def test_a_partition_error_is_err_on_that_partition_only() -> None:
    rows = (
        PartitionRead("t", 0, 1, 0, 1),
        PartitionRead("t", 1, None, error="list offsets: NOT_LEADER"),
    )
    read = LagRead(T0, (GroupRead("g", "STABLE", 1, rows),), {"t": 2})
    (report,) = await sample_all([read], Thresholds())
    statuses = [(p.partition, p.status) for p in report.groups[0].partitions]
    assert statuses == [(0, Status.OK), (1, Status.ERR)]
    assert report.groups[0].status is Status.ERR


async def test_unknown_group_is_err() -> None:
    read = LagRead(T0, (GroupRead("nobody", "DEAD", 0, ()),))
    (report,) = await sample_all([read], Thresholds())
    assert report.groups[0].status is Status.ERR
    assert "no such group" in report.groups[0].reason


async def test_a_partition_no_longer_read_is_dropped() -> None:
    first = lane_read(T0, 7, 10)
    g = first.groups[0]
    second = LagRead(T0 + 1, (GroupRead(g.group, g.state, 1, g.partitions[:1]),))
    reports = await sample_all([first, second], Thresholds())
    assert [p.partition for p in reports[-1].groups[0].partitions] == [0]


async def test_table_and_json() -> None:
    reads = [lane_read(T0 + i, 7, 10, members=0) for i in range(3)]
    report = (await sample_all(reads, Thresholds(stop_after_s=10)))[-1]
    text = table(report, interval_s=1.5)
    lines = text.splitlines()
    assert lines[0].split() == [
        "GROUP",
        "TOPIC",
        "PART",
        "COMMITTED",
        "END",
        "LAG",
        "TIME-LAG",
        "STATUS",
        "REASON",
    ]
    assert lines[1].split()[:8] == [
        "kjs-workers-normal",
        "jobs.due.normal",
        "0",
        "7",
        "10",
        "3",
        "30.0s",
        "STOP",
    ]
    assert "STOP after 10s" in text and "3 sample(s), 1.5s apart" in text
    doc = json.loads(json.dumps(as_json(report)))
    group = doc["groups"][0]
    assert group["status"] == "STOP" and group["partitions"][0]["committed"] == 7
    assert doc["thresholds"] == {"window": 10, "min_samples": 3, "stop_after_s": 10}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (0.0, "0.0s"), (59.94, "59.9s"), (61, "1m01s"), (3725, "1h02m")],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


async def test_exporter_gauges() -> None:
    reads = [lane_read(T0 + i, 10 * i, 10 * i + 3 + 5 * i) for i in range(3)]
    report = (await sample_all(reads, Thresholds()))[-1]
    collector = LagCollector()
    collector.report, collector.samples = report, 3
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    lane = (("group", "kjs-workers-normal"), ("partition", "0"), ("topic", "jobs.due.normal"))
    assert got[("kjs_consumer_lag_messages", lane)] == 13
    assert got[("kjs_consumer_lag_seconds", lane)] == 30.0
    assert got[("kjs_consumer_group_committed_offset", lane)] == 20
    group = (("group", "kjs-workers-normal"),)
    assert got[("kjs_consumer_group_status", (*group, ("status", "WARN")))] == 1
    assert got[("kjs_consumer_group_status", (*group, ("status", "OK")))] == 0
    assert got[("kjs_consumer_group_members", group)] == 1
    assert got[("kjs_lane_workers_needed", group)] == 2
    assert got[("kjs_topic_partitions", (("topic", "jobs.due.normal"),))] == 2
    assert got[("kjs_topic_end_offset", (("partition", "1"), ("topic", "jobs.due.normal")))] == 5
    assert got[("kjs_lag_exporter_samples_total", ())] == 3
    assert got[("kjs_lag_exporter_last_sample_timestamp_seconds", ())] == T0 + 2


def test_unknown_figures_are_absent_not_zero() -> None:
    collector = LagCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    names = {
        s.name
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert names == {"kjs_lag_exporter_samples_total"}


def test_kjs_groups_know_their_topics() -> None:
    from core.settings import KafkaSettings
    from topics.catalog import catalog

    cat = catalog(KafkaSettings(namespace="x."))
    assert kjs_group_topics(cat) == {
        "x.kjs-scheduler": ["x.jobs.commands", "x.jobs.results"],
        "x.kjs-workers-critical": ["x.jobs.due.critical"],
        "x.kjs-workers-normal": ["x.jobs.due.normal"],
        "x.kjs-workers-low": ["x.jobs.due.low"],
    }
    named = monitored_groups(
        KafkaSettings(namespace="x."), ["other", "x.kjs-workers-low"], include_kjs=False
    )
    assert named == {"other": [], "x.kjs-workers-low": ["x.jobs.due.low"]}
    both = monitored_groups(KafkaSettings(namespace="x."), ["other"])
    assert list(both) == [*kjs_group_topics(cat), "other"]

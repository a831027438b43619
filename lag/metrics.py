"""Every metric name kjs exports.

``EXPORTER_METRICS`` are served by the lag exporter (``kjs lag --serve``). The other
processes' metrics are read from their live registries (``registered``):
``tests/unit/test_lag_monitoring_files.py`` checks ``infra/monitoring/``'s alert rules and
dashboard against both, so a renamed metric shows which rule or panel to fix.

Names are as exposed: counters with their ``_total``, histograms by their base name (their
``_bucket``, ``_sum`` and ``_count`` series are implied).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry

Kind = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True)
class MetricName:
    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    process: str = "lag exporter"


LAG_MESSAGES = MetricName(
    "kjs_consumer_lag_messages",
    "gauge",
    ("group", "topic", "partition"),
    "Offset lag: high watermark minus committed offset (from the log start when the group "
    "never committed), never negative.",
)
LAG_SECONDS = MetricName(
    "kjs_consumer_lag_seconds",
    "gauge",
    ("group", "topic", "partition"),
    "Time lag: now minus the timestamp of the record at the committed offset; 0 when caught "
    "up, absent when that record could not be read.",
)
COMMITTED_OFFSET = MetricName(
    "kjs_consumer_group_committed_offset",
    "gauge",
    ("group", "topic", "partition"),
    "The group's committed offset; absent where it has none.",
)
END_OFFSET = MetricName(
    "kjs_topic_end_offset",
    "gauge",
    ("topic", "partition"),
    "The partition's high watermark (rate() of it is the produce rate).",
)
GROUP_STATUS = MetricName(
    "kjs_consumer_group_status",
    "gauge",
    ("group", "status"),
    "1 for the group's current status (OK, WARN, REWIND, STALL, STOP, ERR), 0 for the others.",
)
GROUP_MEMBERS = MetricName(
    "kjs_consumer_group_members",
    "gauge",
    ("group",),
    "Active members of the group; absent when it could not be described.",
)
WORKERS_NEEDED = MetricName(
    "kjs_lane_workers_needed",
    "gauge",
    ("group",),
    "Consumers needed to drain the group's lag within the drain target at the measured "
    "consumption rate per member (capped at the partition count); absent when unknown.",
)
TOPIC_PARTITIONS = MetricName(
    "kjs_topic_partitions", "gauge", ("topic",), "Partitions of each topic the monitor reads."
)
LAST_SAMPLE = MetricName(
    "kjs_lag_exporter_last_sample_timestamp_seconds",
    "gauge",
    (),
    "When the exporter last sampled (seconds since the epoch).",
)
SAMPLES = MetricName(
    "kjs_lag_exporter_samples_total", "counter", (), "Samples taken by the exporter."
)

EXPORTER_METRICS: tuple[MetricName, ...] = (
    LAG_MESSAGES,
    LAG_SECONDS,
    COMMITTED_OFFSET,
    END_OFFSET,
    GROUP_STATUS,
    GROUP_MEMBERS,
    WORKERS_NEEDED,
    TOPIC_PARTITIONS,
    LAST_SAMPLE,
    SAMPLES,
)


def registered(registry: CollectorRegistry, process: str) -> list[MetricName]:
    """The kjs metrics a process registered: the names its ``/metrics`` exports, read from
    the live registry (so a renamed metric cannot leave a stale list behind)."""
    found = []
    # prometheus_client keeps a metric's label names on the metric object only.
    for collector in list(registry._collector_to_names):
        labels = tuple(getattr(collector, "_labelnames", ()))
        for family in collector.collect():
            if not family.name.startswith("kjs_"):
                continue
            kinds: dict[str, Kind] = {"counter": "counter", "histogram": "histogram"}
            kind = kinds.get(family.type, "gauge")  # a gauge, or an info (a gauge of 1)
            name = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
            found.append(MetricName(name, kind, labels, family.documentation, process))
    return found


# Series every Prometheus target has without exporting them.
PROMETHEUS_BUILTIN: frozenset[str] = frozenset({"up", "scrape_duration_seconds"})


def known_series(metrics: Iterable[MetricName]) -> frozenset[str]:
    """Every series name a query may use: the names of ``metrics``, with a histogram's
    suffixes, and the series Prometheus adds itself."""
    names: set[str] = set(PROMETHEUS_BUILTIN)
    for metric in metrics:
        names.add(metric.name)
        if metric.kind == "histogram":
            names.update(f"{metric.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return frozenset(names)

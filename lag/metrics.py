"""Every metric name kjs exports, in one place.

``EXPORTER_METRICS`` are served by the lag exporter (``kjs lag --serve``). ``PROCESS_METRICS``
are the names the other kjs processes export on their ``/metrics``: the contract that
``infra/monitoring/``'s alert rules and dashboard are written against, and checked against by
``tests/unit/test_lag_monitoring_files.py``. A process that renames a metric must change it
here too, and the check then shows which rule or panel to fix.

Names are as exposed: counters with their ``_total``, histograms by their base name (their
``_bucket``, ``_sum`` and ``_count`` series are implied).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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

PROCESS_METRICS: tuple[MetricName, ...] = (
    MetricName(
        "kjs_api_requests_total",
        "counter",
        ("route", "method", "code_class"),
        "HTTP requests answered.",
        "api",
    ),
    MetricName(
        "kjs_api_submit_duration_seconds",
        "histogram",
        ("outcome",),
        "POST /v1/jobs, receipt to answer.",
        "api",
    ),
    MetricName("kjs_jobs_fired_total", "counter", ("lane",), "Due events produced.", "scheduler"),
    MetricName(
        "kjs_shards_owned",
        "gauge",
        (),
        "Shards (jobs.commands partitions) this scheduler instance owns.",
        "scheduler",
    ),
    MetricName(
        "kjs_schedule_lateness_seconds",
        "histogram",
        (),
        "Start time minus due time of an execution.",
        "scheduler, workers",
    ),
    MetricName(
        "kjs_executions_total",
        "counter",
        ("status", "lane", "target"),
        "Executions finished, by status (succeeded, failed, ...), lane and target type.",
        "workers",
    ),
    MetricName(
        "kjs_dead_letters_total",
        "counter",
        (),
        "Records sent to jobs.dlq.",
        "scheduler, workers",
    ),
)

# Series every Prometheus target has without exporting them.
PROMETHEUS_BUILTIN: frozenset[str] = frozenset({"up", "scrape_duration_seconds"})


def known_series() -> frozenset[str]:
    """Every series name a query may use: the names above, with a histogram's suffixes."""
    names: set[str] = set(PROMETHEUS_BUILTIN)
    for metric in (*EXPORTER_METRICS, *PROCESS_METRICS):
        names.add(metric.name)
        if metric.kind == "histogram":
            names.update(f"{metric.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return frozenset(names)

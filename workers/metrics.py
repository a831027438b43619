"""The workers' Prometheus metrics. Labels: lane (3), target type (registry), status (2)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EXECUTIONS = Counter(
    "kjs_executions",
    "Attempts run to an outcome, by status, lane and target type.",
    ["status", "lane", "target"],
)
DURATION = Histogram(
    "kjs_execution_duration_seconds",
    "How long a target took, by lane and target type.",
    ["lane", "target"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
LATENESS = Histogram(
    "kjs_schedule_lateness_seconds",
    "Start of an attempt minus its due time (scheduled_for, or a retry's not_before).",
    ["lane"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SKIPPED_REDELIVERIES = Counter(
    "kjs_redeliveries_not_run",
    "Due events acknowledged without running: the execution was not queued any more.",
    ["lane"],
)
IN_FLIGHT = Gauge("kjs_worker_in_flight", "Executions claimed and not finished.", ["lane"])

"""The workers' Prometheus metrics. Labels: lane (3), target type (registry), status (2)."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class AttemptMetrics:
    """The labelled children one attempt updates, looked up once per lane and target type:
    ``labels()`` hashes its arguments under a lock, which at a burst's rate is not free."""

    lateness: Histogram
    duration: Histogram
    in_flight: Gauge
    succeeded: Counter
    failed: Counter

    @classmethod
    def of(cls, lane: str, target_type: str) -> AttemptMetrics:
        return cls(
            lateness=LATENESS.labels(lane),
            duration=DURATION.labels(lane, target_type),
            in_flight=IN_FLIGHT.labels(lane),
            succeeded=EXECUTIONS.labels("succeeded", lane, target_type),
            failed=EXECUTIONS.labels("failed", lane, target_type),
        )

"""The scheduler's Prometheus metrics. Labels are bounded: command types and outcomes are
fixed sets, lanes are three, shards are at most the partition count; never a job or user id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

COMMANDS = Counter(
    "kjs_commands",
    "Commands consumed from jobs.commands, by type and outcome (created, duplicate, rerouted, "
    "rejected, cancelled, paused, ...).",
    ["type", "outcome"],
)
RESULTS = Counter(
    "kjs_results",
    "Result events recorded, by outcome (recorded, retrying, exhausted, ...).",
    ["outcome"],
)
FIRED = Counter("kjs_jobs_fired", "Executions dispatched to a lane.", ["lane"])
RETRIES = Counter("kjs_retries", "Further attempts scheduled after a failure.")
SKIPPED = Counter(
    "kjs_occurrences_skipped", "Occurrences skipped (misfire or overlap policy).", ["reason"]
)
DISPATCH_LEAD = Histogram(
    "kjs_dispatch_lead_seconds",
    "Due time minus the time Kafka acknowledged the due event (negative = dispatched late).",
    buckets=(-5, -1, -0.25, -0.1, -0.05, -0.01, 0, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 1),
)
SHARDS_OWNED = Gauge("kjs_shards_owned", "Shards this scheduler instance owns.")
TIMER_HELD = Gauge(
    "kjs_timer_jobs_held", "Jobs and pending runs held in a shard's timer.", ["shard"]
)
DUE_NOT_FIRED = Gauge(
    "kjs_due_not_fired",
    "Jobs and pending runs whose due time passed more than a second ago but are not fired yet, "
    "per shard: the scheduling stage's queue depth, which Kafka lag cannot see.",
    ["shard"],
)
DEPENDENCY_ERRORS = Counter(
    "kjs_dependency_errors", "Transient Postgres or Kafka errors waited out.", ["dependency"]
)

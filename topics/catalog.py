"""Every topic kjs uses, with its key and partitioning rule.

``jobs.commands`` and ``jobs.results`` are co-partitioned: both are keyed by user_id and have
the same partition count, so partition N of both belongs to shard N and one scheduler
instance sees a tenant's commands and results in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import KafkaSettings
from schemas.v1.statuses import LANES, Lane


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    key: str
    config: dict[str, str]


@dataclass(frozen=True)
class Catalog:
    namespace: str
    commands: TopicSpec
    results: TopicSpec
    dlq: TopicSpec
    due: dict[Lane, TopicSpec]
    events: TopicSpec

    def all(self) -> list[TopicSpec]:
        return [self.commands, self.results, *self.due.values(), self.dlq, self.events]

    def group(self, name: str) -> str:
        """A consumer group name inside this installation's namespace."""
        return f"{self.namespace}{name}"

    @property
    def scheduler_group(self) -> str:
        return self.group("kjs-scheduler")

    def worker_group(self, lane: Lane) -> str:
        return self.group(f"kjs-workers-{lane}")


def catalog(settings: KafkaSettings) -> Catalog:
    ns, rf = settings.namespace, settings.replication_factor

    def spec(name: str, partitions: int, key: str, **config: str) -> TopicSpec:
        return TopicSpec(f"{ns}{name}", partitions, rf, key, dict(config))

    return Catalog(
        namespace=ns,
        commands=spec("jobs.commands", settings.command_partitions, "user_id"),
        results=spec("jobs.results", settings.command_partitions, "user_id"),
        dlq=spec("jobs.dlq", 1, "source key", **{"retention.ms": str(30 * 86400 * 1000)}),
        due={lane: spec(f"jobs.due.{lane}", settings.due_partitions, "job_id") for lane in LANES},
        # Keyed by job_id, not co-partitioned: its readers follow jobs, not shards (a job's
        # events stay in order on one partition, a big tenant spreads over all of them). The
        # relay of every shard writes to any partition. Created whether or not KJS_EVENTS is
        # on, so turning it on needs no new topic.
        events=spec("jobs.events", settings.events_partitions, "job_id"),
    )

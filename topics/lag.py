"""Consumer lag per group, topic and partition: the queue depth of every kjs stage.

Offset lag only for now; a partition with no committed offset is reported as such
(``committed = None``), with its lag counted from the log start.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import OffsetSpec

from kjs.settings import LANES, KafkaSettings
from topics.admin import admin_client
from topics.catalog import catalog


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def kjs_groups(kafka: KafkaSettings) -> list[str]:
    cat = catalog(kafka)
    return [cat.scheduler_group, *(cat.worker_group(lane) for lane in LANES)]


async def group_lag(bootstrap: str, groups: list[str]) -> list[PartitionLag]:
    admin = admin_client(bootstrap)
    rows: list[PartitionLag] = []
    for group in groups:
        # One group per call: the client refuses more.
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
        result = await asyncio.wrap_future(futures[group])
        committed = {
            (tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None)
            for tp in result.topic_partitions
        }
        if not committed:
            continue
        ends_f = admin.list_offsets(
            {TopicPartition(t, p): OffsetSpec.latest() for (t, p) in committed}
        )
        for tp, fut in ends_f.items():
            end = (await asyncio.wrap_future(fut)).offset
            have = committed[(tp.topic, tp.partition)]
            lag = max(0, end - (have or 0))
            rows.append(PartitionLag(group, tp.topic, tp.partition, have, end, lag))
    return sorted(rows, key=lambda r: (r.group, r.topic, r.partition))

"""Reading what lag is computed from: committed offsets, log offsets, members, record times.

One ``LagReader.read`` call is one sample of every group:

1. For each group, its committed offsets (one group per ``list_consumer_group_offsets`` call:
   the client refuses more) and, in one call for all groups, its description (state, members
   and their assignments).
2. A group consumes the topics it is known to consume (kjs's groups: from the catalog),
   those it has committed offsets on, and those assigned to its members. Every partition of
   those topics is reported, so a partition the group never committed on shows up, with its
   lag counted from the log start, instead of being left out as Kafka's own tool does.
3. The log start and the high watermark of every such partition (``OffsetSpec.earliest()``
   and ``OffsetSpec.latest()``, read-uncommitted like ``kafka-consumer-groups``).
4. The timestamp of the record at each lagging partition's read position, read by a
   short-lived consumer with no group that is assigned those partitions (``record_timestamps``).

A failure is kept where it happened: a group whose offsets cannot be listed carries the error;
a partition whose offsets cannot be listed carries its own; an unreadable record leaves its
timestamp None.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from core.settings import KafkaSettings
from lag.figures import offset_lag, read_position
from topics.security import aiokafka_config, librdkafka_config

Key = tuple[str, int]

# How long one sample may wait for the records its time lags are read on.
RECORD_TIMEOUT_S = 5.0
ADMIN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class PartitionRead:
    topic: str
    partition: int
    committed: int | None = None
    start: int = 0
    end: int = 0
    # Seconds since the epoch of the record at the read position; None: caught up or unreadable.
    record_ts: float | None = None
    error: str | None = None

    @property
    def lag(self) -> int:
        return offset_lag(self.committed, self.start, self.end)


@dataclass(frozen=True)
class GroupRead:
    group: str
    state: str = "UNKNOWN"
    members: int | None = None
    partitions: tuple[PartitionRead, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class LagRead:
    at: float
    groups: tuple[GroupRead, ...]
    topic_partitions: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Description:
    state: str
    members: int | None
    assigned: frozenset[str]
    error: str | None = None


class LagReader:
    """Reads samples through one long-lived admin client; cheap to keep between samples."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        record_timeout_s: float = RECORD_TIMEOUT_S,
        admin_timeout_s: float = ADMIN_TIMEOUT_S,
    ) -> None:
        self.kafka = kafka
        self.record_timeout_s = record_timeout_s
        self.admin_timeout_s = admin_timeout_s
        self._admin = AdminClient(
            {
                **librdkafka_config(kafka),
                "client.id": "kjs-lag",
                "socket.connection.setup.timeout.ms": int(admin_timeout_s * 1000),
            }
        )

    async def read(self, groups: Mapping[str, Sequence[str]]) -> LagRead:
        """One sample of ``groups`` (group name -> the topics it is known to consume)."""
        names = list(groups)
        described, committed = await asyncio.gather(
            self._describe(names), asyncio.gather(*(self._committed(g) for g in names))
        )
        topic_sets: dict[str, set[str]] = {}
        for name, (offsets, _) in zip(names, committed, strict=True):
            known = {*groups[name], *(t for t, _ in offsets), *described[name].assigned}
            topic_sets[name] = known
        partitions, topic_errors = await self._partitions(set().union(*topic_sets.values()))
        keys = {(t, p) for t, n in partitions.items() for p in range(n)}
        starts, ends = await asyncio.gather(
            self._offsets(keys, OffsetSpec.earliest()), self._offsets(keys, OffsetSpec.latest())
        )
        at = time.time()
        reads: list[GroupRead] = []
        for name, (offsets, error) in zip(names, committed, strict=True):
            desc = described[name]
            errors = [e for e in (error, desc.error) if e is not None]
            errors += [topic_errors[t] for t in sorted(topic_sets[name]) if t in topic_errors]
            rows = []
            if error is None:
                for t in sorted(topic_sets[name]):
                    for p in range(partitions.get(t, 0)):
                        rows.append(_partition(t, p, offsets.get((t, p)), starts, ends))
            reads.append(GroupRead(name, desc.state, desc.members, tuple(rows), tuple(errors)))
        return LagRead(at, tuple(await self._with_timestamps(reads)), dict(partitions))

    async def _committed(self, group: str) -> tuple[dict[Key, int | None], str | None]:
        try:
            futures = self._admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=self.admin_timeout_s
            )
            result = await _wrap(futures[group])
        except KafkaException as exc:
            return {}, f"committed offsets: {_text(exc)}"
        offsets: dict[Key, int | None] = {}
        for tp in result.topic_partitions:
            offsets[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else None
        return offsets, None

    async def _describe(self, groups: Sequence[str]) -> dict[str, _Description]:
        if not groups:
            return {}
        futures = self._admin.describe_consumer_groups(
            list(groups), request_timeout=self.admin_timeout_s
        )
        out: dict[str, _Description] = {}
        for group, future in futures.items():
            try:
                desc = await _wrap(future)
            except KafkaException as exc:
                out[group] = _Description("UNKNOWN", None, frozenset(), f"describe: {_text(exc)}")
                continue
            assigned = frozenset(
                tp.topic
                for member in desc.members
                if member.assignment is not None
                for tp in member.assignment.topic_partitions
            )
            state = desc.state.name if isinstance(desc.state, ConsumerGroupState) else "UNKNOWN"
            out[group] = _Description(state, len(desc.members), assigned)
        return out

    async def _partitions(self, topics: set[str]) -> tuple[dict[str, int], dict[str, str]]:
        if not topics:
            return {}, {}
        futures = self._admin.describe_topics(
            TopicCollection(sorted(topics)), request_timeout=self.admin_timeout_s
        )
        counts: dict[str, int] = {}
        errors: dict[str, str] = {}
        for topic, future in futures.items():
            try:
                counts[topic] = len((await _wrap(future)).partitions)
            except KafkaException as exc:
                errors[topic] = f"topic {topic}: {_text(exc)}"
        return counts, errors

    async def _offsets(self, keys: set[Key], spec: OffsetSpec) -> dict[Key, int | str]:
        """Offset per partition, or the error text where it could not be listed."""
        if not keys:
            return {}
        futures = self._admin.list_offsets(
            {TopicPartition(t, p): spec for t, p in sorted(keys)},
            request_timeout=self.admin_timeout_s,
        )
        out: dict[Key, int | str] = {}
        for tp, future in futures.items():
            try:
                out[(tp.topic, tp.partition)] = (await _wrap(future)).offset
            except KafkaException as exc:
                out[(tp.topic, tp.partition)] = f"list offsets: {_text(exc)}"
        return out

    async def _with_timestamps(self, reads: list[GroupRead]) -> list[GroupRead]:
        """Fill in the record timestamp of every partition that lags."""

        def wanted(p: PartitionRead) -> tuple[str, int, int] | None:
            if p.error is not None or p.lag == 0:
                return None
            return (p.topic, p.partition, read_position(p.committed, p.start))

        keys = {k for g in reads for p in g.partitions if (k := wanted(p)) is not None}
        found = await record_timestamps(self.kafka, keys, self.record_timeout_s)
        out = []
        for g in reads:
            rows = []
            for p in g.partitions:
                key = wanted(p)
                rows.append(p if key is None else replace(p, record_ts=found.get(key)))
            out.append(replace(g, partitions=tuple(rows)))
        return out


async def record_timestamps(
    kafka: KafkaSettings, wanted: set[tuple[str, int, int]], timeout_s: float
) -> dict[tuple[str, int, int], float | None]:
    """The timestamp (s) of the first record at or after each (topic, partition, offset).

    The first record at or after the offset, since a compacted or transactional log may have
    no record at that exact offset. A short-lived consumer with no group is assigned the
    partitions, seeks each to its lowest wanted offset, and is paused on a partition once
    that partition's offsets are all answered. What is not read within ``timeout_s`` is
    missing from the result; a record without a timestamp maps to None.
    """
    if not wanted:
        return {}
    pending: dict[Key, list[int]] = {}
    for topic, partition, offset in sorted(wanted):
        pending.setdefault((topic, partition), []).append(offset)
    found: dict[tuple[str, int, int], float | None] = {}
    consumer = AIOKafkaConsumer(
        **aiokafka_config(kafka),
        group_id=None,
        client_id="kjs-lag-records",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_uncommitted",
        max_partition_fetch_bytes=64 * 1024,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        tps = {key: AioTopicPartition(*key) for key in pending}
        consumer.assign(list(tps.values()))
        for key, offsets in pending.items():
            consumer.seek(tps[key], offsets[0])
        deadline = time.monotonic() + timeout_s
        while any(pending.values()) and (left := deadline - time.monotonic()) > 0:
            batch = await consumer.getmany(timeout_ms=max(1, int(min(left, 0.5) * 1000)))
            for tp, records in batch.items():
                key = (tp.topic, tp.partition)
                queue = pending.get(key, [])
                for record in records:
                    ts = record.timestamp / 1000 if record.timestamp >= 0 else None
                    while queue and record.offset >= queue[0]:
                        found[(*key, queue.pop(0))] = ts
                    if not queue:
                        consumer.pause(tp)
                        break
                    if record.offset < queue[0]:
                        consumer.seek(tp, queue[0])  # jump to this partition's next offset
                        break
    finally:
        await consumer.stop()
    return found


def _partition(
    topic: str,
    partition: int,
    committed: int | None,
    starts: Mapping[Key, int | str],
    ends: Mapping[Key, int | str],
) -> PartitionRead:
    start = starts.get((topic, partition), "list offsets: no answer")
    end = ends.get((topic, partition), "list offsets: no answer")
    if isinstance(start, str):
        return PartitionRead(topic, partition, committed, error=start)
    if isinstance(end, str):
        return PartitionRead(topic, partition, committed, error=end)
    return PartitionRead(topic, partition, committed, start, end)


async def _wrap(future: Any) -> Any:
    """A confluent-kafka admin future, awaited on the running loop."""
    result: Awaitable[Any] = asyncio.wrap_future(future)
    return await result


def _text(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    name = getattr(err, "name", None)
    text = getattr(err, "str", None)
    if callable(name) and callable(text):
        return f"{name()}: {text()}"
    return str(exc)

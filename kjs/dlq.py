"""``kjs dlq list`` and ``kjs dlq replay``: read dead letters, and replay one as a new run.

A dead letter for a failed execution carries, in its value, the ``trigger`` command that
runs its job again; replaying produces that command to ``jobs.commands``. Other dead
letters (a command that did not parse) have nothing to replay: fix it and send it anew.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from core.settings import KafkaSettings
from schemas.v1.commands import COMMAND
from topics.catalog import Catalog
from topics.dlq import REASON
from topics.producer import durable_producer
from topics.security import aiokafka_config


@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    reason: str
    key: str | None
    value: Any


async def read_letters(kafka: KafkaSettings, cat: Catalog, limit: int = 100) -> list[Letter]:
    """The newest ``limit`` dead letters of every partition, oldest first."""
    consumer = AIOKafkaConsumer(**aiokafka_config(kafka), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(cat.dlq.name, p) for p in range(cat.dlq.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        letters: list[Letter] = []
        for tp in tps:
            first = max(starts[tp], ends[tp] - limit)
            if first >= ends[tp]:
                continue
            consumer.seek(tp, first)
            while (await consumer.position(tp)) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for rec in batch.get(tp, []):
                    letters.append(_letter(rec))
        return letters
    finally:
        await consumer.stop()


def _letter(rec: Any) -> Letter:
    headers = dict(rec.headers)
    try:
        value = json.loads(rec.value) if rec.value is not None else None
    except ValueError:
        value = rec.value.decode(errors="replace")
    return Letter(
        rec.partition,
        rec.offset,
        headers.get(REASON, b"").decode(errors="replace"),
        rec.key.decode(errors="replace") if rec.key is not None else None,
        value,
    )


class NotReplayable(ValueError):
    pass


async def replay(kafka: KafkaSettings, cat: Catalog, partition: int, offset: int) -> str:
    """Produce the replay command of the dead letter at partition/offset; returns the job id."""
    letters = [
        letter
        for letter in await read_letters(kafka, cat, limit=1_000_000)
        if letter.partition == partition and letter.offset == offset
    ]
    if not letters:
        raise NotReplayable(f"no dead letter at {cat.dlq.name}[{partition}]@{offset}")
    value = letters[0].value
    if not isinstance(value, dict) or "replay" not in value:
        raise NotReplayable("this dead letter is a rejected command: fix it and submit it anew")
    command = COMMAND.validate_python(value["replay"])
    producer = durable_producer(kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            cat.commands.name, command.model_dump_json().encode(), key=command.user_id.encode()
        )
    finally:
        await producer.stop()
    return str(value["job_id"])

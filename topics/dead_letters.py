"""Dead letters read back from ``jobs.dlq``: listing them, finding one, and replaying one.

``kjs dlq`` and the web console both read through here, so they show the same letters and
replay them the same way. A dead letter for a failed execution carries, in its value, the
``trigger`` command that runs its job again (``replay_command``); other dead letters (a command
that did not parse, a due event a worker could not read) have nothing to replay.

Whose letter is it (``letter_owner``): a letter keeps the key of the record it replaces, and
``jobs.commands`` and ``jobs.results`` are keyed by the tenant's user id (as is the letter of
a failed execution). Due events are keyed by job id, so a worker's letter names its tenant
only inside the event, when the event could be read that far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from core.settings import KafkaSettings
from schemas.v1.commands import COMMAND, TriggerCommand
from topics.catalog import Catalog
from topics.dlq import REASON, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC
from topics.producer import durable_producer
from topics.security import aiokafka_config

# How long one read waits for records it knows are there (a broker answers in milliseconds).
_FETCH_TIMEOUT_MS = 1000


@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    reason: str
    key: str | None
    value: Any
    # The record's Kafka timestamp, seconds since the epoch.
    timestamp: float | None = None
    # Where the record that could not be applied came from (the dead letter's headers).
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None


class NotReplayable(ValueError):
    pass


def letter_owner(letter: Letter, cat: Catalog) -> str | None:
    """The tenant a dead letter belongs to, or None when it names none."""
    due_topics = {spec.name for spec in cat.due.values()}
    if letter.source_topic in due_topics:
        value = letter.value
        user = value.get("user_id") if isinstance(value, dict) else None
        return user if isinstance(user, str) else None
    return letter.key


def replay_command(letter: Letter) -> TriggerCommand:
    """The command that runs the letter's job again; NotReplayable when it carries none."""
    value = letter.value
    if not isinstance(value, dict) or "replay" not in value:
        raise NotReplayable("this dead letter is a rejected record: fix it and submit it anew")
    try:
        command = COMMAND.validate_python(value["replay"])
    except ValidationError as exc:
        raise NotReplayable(f"its replay command is not valid: {exc}") from exc
    if not isinstance(command, TriggerCommand):
        raise NotReplayable(f"its replay command is a {command.type}, not a trigger")
    return command


def _consumer(kafka: KafkaSettings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **aiokafka_config(kafka), group_id=None, enable_auto_commit=False, client_id="kjs-dlq"
    )


async def read_letters(kafka: KafkaSettings, cat: Catalog, limit: int = 100) -> list[Letter]:
    """The newest ``limit`` dead letters of every partition, oldest first."""
    consumer = _consumer(kafka)
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
                batch = await consumer.getmany(tp, timeout_ms=_FETCH_TIMEOUT_MS)
                for rec in batch.get(tp, []):
                    if rec.offset < ends[tp]:
                        letters.append(_letter(rec))
        return letters
    finally:
        await consumer.stop()


async def read_letter(
    kafka: KafkaSettings, cat: Catalog, partition: int, offset: int
) -> Letter | None:
    """The dead letter at ``partition``/``offset``, or None when there is none."""
    if not 0 <= partition < cat.dlq.partitions or offset < 0:
        return None
    consumer = _consumer(kafka)
    await consumer.start()
    try:
        tp = TopicPartition(cat.dlq.name, partition)
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not start <= offset < end:
            return None
        consumer.seek(tp, offset)
        while (await consumer.position(tp)) <= offset:
            batch = await consumer.getmany(tp, timeout_ms=_FETCH_TIMEOUT_MS)
            for rec in batch.get(tp, []):
                # A compacted or transactional log may have no record at that exact offset.
                return _letter(rec) if rec.offset == offset else None
        return None
    finally:
        await consumer.stop()


async def replay(kafka: KafkaSettings, cat: Catalog, partition: int, offset: int) -> str:
    """Produce the replay command of the dead letter at partition/offset; returns the job id.

    This is ``kjs dlq replay``, an operator's tool: it acts for whichever tenant the letter
    names. The console replays through the API's own trigger instead, with its tenancy and
    quota checks."""
    letter = await read_letter(kafka, cat, partition, offset)
    if letter is None:
        raise NotReplayable(f"no dead letter at {cat.dlq.name}[{partition}]@{offset}")
    command = replay_command(letter)
    producer = durable_producer(kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            cat.commands.name, command.model_dump_json().encode(), key=command.user_id.encode()
        )
    finally:
        await producer.stop()
    return str(command.job_id)


def _letter(rec: Any) -> Letter:
    headers = {name: value.decode(errors="replace") for name, value in rec.headers}
    try:
        value = json.loads(rec.value) if rec.value is not None else None
    except ValueError:
        value = rec.value.decode(errors="replace")
    return Letter(
        rec.partition,
        rec.offset,
        headers.get(REASON, ""),
        rec.key.decode(errors="replace") if rec.key is not None else None,
        value,
        timestamp=rec.timestamp / 1000
        if rec.timestamp is not None and rec.timestamp >= 0
        else None,
        source_topic=headers.get(SOURCE_TOPIC),
        source_partition=_int(headers.get(SOURCE_PARTITION)),
        source_offset=_int(headers.get(SOURCE_OFFSET)),
    )


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None

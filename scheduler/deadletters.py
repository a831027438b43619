"""Send a record that cannot be applied to ``jobs.dlq``, so its partition keeps flowing."""

from __future__ import annotations

import logging

from scheduler.kafka_io import Sender
from scheduler.records import Record
from topics.dlq import DEAD_LETTERS, DeadLetter

log = logging.getLogger(__name__)


async def dead_letter(sender: Sender, dlq_topic: str, record: Record, reason: str) -> None:
    letter = DeadLetter(
        reason, record.topic, record.partition, record.offset, record.key, record.value
    )
    log.warning("dead letter from %s: %s", record.source, reason, extra={"shard": record.partition})
    ack = await sender.send(dlq_topic, record.key, record.value, headers=letter.headers())
    await ack
    DEAD_LETTERS.labels(record.topic.rsplit(".", 1)[-1]).inc()

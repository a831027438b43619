"""What a worker sends back to Kafka: one result per attempt, and dead letters.

Both are produced with acks=all and awaited: a record's offset is only committed once what
it produced is durable, so a crash before the ack redelivers the record instead of losing
its result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from core.backoff import DEFAULT_BACKOFF, Backoff
from schemas.v1.events import ResultEvent
from topics.catalog import Catalog
from topics.dlq import DeadLetter

log = logging.getLogger(__name__)


class Reporter:
    def __init__(
        self, producer: AIOKafkaProducer, cat: Catalog, backoff: Backoff = DEFAULT_BACKOFF
    ) -> None:
        self._producer = producer
        self._results_topic = cat.results.name
        self._dlq_topic = cat.dlq.name
        self._backoff = backoff

    async def result(
        self, event: ResultEvent, headers: Sequence[tuple[str, bytes]] | None = None
    ) -> None:
        # Keyed by user_id with the default (murmur2) partitioner: the result lands on the
        # partition number of the user's commands, i.e. at the shard that owns the user.
        # ``headers``: the run's traceparent, when it has a trace.
        await self._send(
            self._results_topic,
            key=event.user_id.encode(),
            value=event.model_dump_json().encode(),
            headers=headers or (),
            what=f"result of {event.execution_id}",
        )

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self._send(
            self._dlq_topic,
            key=letter.key,
            value=letter.value,
            headers=letter.headers(),
            what=f"dead letter for {letter.topic}[{letter.partition}]@{letter.offset}",
        )

    async def _send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        what: str,
    ) -> None:
        """Send until acked. The attempt already ran, so giving up would lose its outcome;
        during a broker outage this holds the record (and its offset) instead."""
        failures = 0
        while True:
            try:
                await self._producer.send_and_wait(
                    topic, value=value, key=key, headers=list(headers) or None
                )
                return
            except KafkaError as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning("producing %s failed (%s); retrying in %.2f s", what, exc, delay)
                await asyncio.sleep(delay)

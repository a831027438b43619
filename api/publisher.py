"""Producing commands to Kafka, and answering only once the broker acknowledged them.

The producer is started lazily and started again after a failed start, so the API comes up
(and ``/healthz`` answers) while Kafka is down, and recovers without a restart when it returns.

A publish that times out is ambiguous: the record may still be delivered later, because an
idempotent producer keeps retrying a batch already handed to it. The client sees 503 and
retries; a submission carrying an ``idempotency_key`` maps to the same job_id every time, so
such a retry can never create a second job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from core.settings import KafkaSettings
from topics.producer import durable_producer

log = logging.getLogger(__name__)

# Readiness must answer fast even when the broker is slow.
READY_TIMEOUT_S = 2.0


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge in time; the command may or may not have been written."""


class CommandPublisher:
    def __init__(
        self,
        kafka: KafkaSettings,
        timeout_s: float,
        factory: Callable[[KafkaSettings], AIOKafkaProducer] = durable_producer,
    ) -> None:
        self._kafka = kafka
        self._timeout_s = timeout_s
        self._factory = factory
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                producer = await self._started()
                await producer.send_and_wait(topic, value=value, key=key, headers=headers)
        except (TimeoutError, KafkaError, OSError) as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge: {exc!r}") from exc

    async def is_connected(self) -> bool:
        """Whether a broker answers a metadata request now (not merely at some point)."""
        try:
            async with asyncio.timeout(min(READY_TIMEOUT_S, self._timeout_s)):
                producer = await self._started()
                await producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError, OSError) as exc:
            log.info("Kafka not ready: %r", exc)
            return False
        return True

    async def warm_up(self) -> None:
        """Connect ahead of the first request; a failure here is retried by that request."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._started()
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("Kafka not reachable at start, will retry on demand: %r", exc)

    async def close(self) -> None:
        async with self._starting:
            producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                # aiokafka binds a producer to the running loop, so it is built here.
                producer = self._factory(self._kafka)
                try:
                    await producer.start()
                except BaseException:
                    # A producer whose start failed cannot be started again: drop it.
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

"""The scheduler's way to produce: through the faust app's producer (aiokafka, murmur2)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, Protocol

# How long a re-route waits for the producer to learn of a partition a resize just added:
# the scheduler refreshes its metadata every 5 s (scheduler.app METADATA_MAX_AGE_MS).
UNKNOWN_PARTITION_WAIT_S = 30.0


class Sender(Protocol):
    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]:
        """Queue a record; the returned awaitable completes when Kafka acknowledged it."""
        ...


class FaustSender:
    def __init__(self, app: Any) -> None:
        self._app = app

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]:
        fut: Awaitable[Any] = await self._app.producer.send(
            topic, key, value, partition, None, list(headers) if headers else None
        )
        return fut


async def track_topics(producer: Any, topics: Iterable[str]) -> None:
    """Keep an aiokafka producer's metadata refreshes to ``topics``.

    aiokafka asks for every topic of the cluster while the topics its client tracks are
    none, and they stay none: the bootstrap metadata knows the topics a send goes to, so no
    send adds them. Each refresh (every 5 s in the scheduler, for a resize's partitions:
    ``scheduler.app.METADATA_MAX_AGE_MS``) then decoded the whole cluster's metadata, 6% of
    the scheduler's CPU at 500 jobs/s on a broker holding 4,500 topics. A send to a topic not
    in ``topics`` still adds it.
    """
    await producer.client.set_topics(list(topics))


class ProducerSender:
    """The same protocol over a plain aiokafka producer (benchmarks and tests that run a
    shard timer outside faust)."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]:
        fut: Awaitable[Any] = await self._producer.send(
            topic, value, key=key, partition=partition, headers=list(headers or [])
        )
        return fut


async def send_to_partition(
    sender: Sender,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    partition: int,
    headers: Sequence[tuple[str, bytes]],
) -> None:
    """Produce to one partition and wait for the ack (a re-route of a command or result).

    aiokafka refuses a partition its metadata does not know yet (an ``AssertionError``); right
    after a resize that is a new partition, which the next metadata refresh brings."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + UNKNOWN_PARTITION_WAIT_S
    while True:
        try:
            ack = await sender.send(topic, key, value, partition=partition, headers=headers)
            break
        except AssertionError:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.5)
    await ack

"""The scheduler's way to produce: through the faust app's producer (aiokafka, murmur2)."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol


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

"""A ``scheduler.kafka_io.Sender`` double for tests that need no broker."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


class _Ack:
    def __await__(self) -> Iterator[None]:
        return iter(())


class RecordingSender:
    """A ``scheduler.kafka_io.Sender`` that keeps what it is given, acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, dict[str, bytes]]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> _Ack:
        self.sent.append((topic, key, value, dict(headers or ())))
        return _Ack()

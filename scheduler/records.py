"""A consumed record as the scheduler's handlers see it, independent of the faust event."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    # When the record was produced (seconds since the epoch), if the broker says.
    timestamp: float | None = None

    @property
    def source(self) -> str:
        return f"kafka:{self.topic}/{self.partition}/{self.offset}"

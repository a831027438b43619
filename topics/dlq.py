"""Dead letters: the record as it came, with the reason and its origin in headers."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter

# Shared by every process that writes dead letters (one name, one registration).
DEAD_LETTERS = Counter(
    "kjs_dead_letters", "Records written to jobs.dlq, by what produced them.", ["source"]
)

REASON = "kjs-dlq-reason"
SOURCE_TOPIC = "kjs-source-topic"
SOURCE_PARTITION = "kjs-source-partition"
SOURCE_OFFSET = "kjs-source-offset"


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (REASON, self.reason[:4000].encode()),
            (SOURCE_TOPIC, self.topic.encode()),
            (SOURCE_PARTITION, str(self.partition).encode()),
            (SOURCE_OFFSET, str(self.offset).encode()),
        ]

"""Which offsets a worker may commit while records finish out of order.

Records of one partition run concurrently and finish in any order. Committing the offset of
a finished record while an earlier one is still running would lose the earlier one on a
crash, so only the prefix of finished records is committable: the next offset to commit is
the lowest offset still running, or one past the highest started when none is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import TopicPartition


@dataclass(frozen=True)
class Ticket:
    """A started record. The generation tells a record started before a revocation from a
    redelivered copy of the same offset started after it."""

    tp: TopicPartition
    offset: int
    generation: int


@dataclass
class _PartitionProgress:
    generation: int
    running: set[int] = field(default_factory=set)
    next_offset: int = 0
    committed: int | None = None

    def committable(self) -> int:
        return min(self.running) if self.running else self.next_offset


class OffsetTracker:
    """Per-partition progress of started and finished records; pure, no I/O."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _PartitionProgress] = {}
        self._generation = 0

    def start(self, tp: TopicPartition, offset: int) -> Ticket:
        progress = self._partitions.get(tp)
        if progress is None:
            progress = self._partitions[tp] = _PartitionProgress(self._generation)
        progress.running.add(offset)
        progress.next_offset = max(progress.next_offset, offset + 1)
        return Ticket(tp, offset, progress.generation)

    def done(self, ticket: Ticket) -> None:
        """Mark a record finished. A ticket from before its partition was dropped is ignored:
        that record's offset now belongs to the partition's next owner."""
        progress = self._partitions.get(ticket.tp)
        if progress is None or progress.generation != ticket.generation:
            return
        progress.running.discard(ticket.offset)

    def committable(self) -> dict[TopicPartition, int]:
        """The next offset to commit for each partition that advanced since the last commit."""
        ready = {}
        for tp, progress in self._partitions.items():
            offset = progress.committable()
            if progress.committed is None or offset > progress.committed:
                ready[tp] = offset
        return ready

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Record that ``offsets`` were committed, so they are not offered again."""
        for tp, offset in offsets.items():
            progress = self._partitions.get(tp)
            if progress is not None:
                progress.committed = max(offset, progress.committed or 0)

    def drop(self, tps: set[TopicPartition] | list[TopicPartition]) -> None:
        """Forget revoked partitions; records still running there will not be committed."""
        for tp in tps:
            self._partitions.pop(tp, None)
        # Tickets of a later start get a new generation, so late `done`s of the dropped
        # records cannot mark a redelivered copy finished.
        self._generation += 1

    def running(self) -> int:
        return sum(len(p.running) for p in self._partitions.values())

"""The fetch loop of one lane: bounded concurrency, pause instead of rebalance, safe commits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from workers.offsets import OffsetTracker, Ticket

log = logging.getLogger(__name__)

ProcessRecord = Callable[[ConsumerRecord], Awaitable[None]]

COMMIT_INTERVAL_S = 0.5
# How long one fetch waits for records, which bounds how late a stop request is seen.
POLL_TIMEOUT_MS = 100
# New records started per event-loop iteration (see ``fetch_until_stopped``).
SPAWN_SLICE = 32


class LaneLoop:
    """Runs each fetched record as a task, with at most ``max_in_flight`` records fetched
    and not finished (held for their instant, waiting for a slot, or running).

    At that bound the assigned partitions are paused but ``getmany`` is still called: a
    consumer that stops polling is evicted from the group (``max.poll.interval.ms``) and its
    partitions move, which on long jobs would turn back-pressure into a rebalance storm.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        process: ProcessRecord,
        *,
        max_in_flight: int,
        stopping: asyncio.Event,
        assigned: asyncio.Event,
        commit_interval_s: float = COMMIT_INTERVAL_S,
    ) -> None:
        self._consumer = consumer
        self._process = process
        self._max_in_flight = max_in_flight
        self._commit_interval_s = commit_interval_s
        self._tracker = OffsetTracker()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = stopping
        self.assigned = assigned
        # Group membership changes seen: a long job must cause none (tests read these).
        self.assignments = 0
        self.revocations = 0

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def listener(self) -> ConsumerRebalanceListener:
        return _CommitBeforeRevoke(self)

    async def fetch_until_stopped(self) -> None:
        next_commit = time.monotonic() + self._commit_interval_s
        while not self._stopping.is_set():
            room = self._max_in_flight - len(self._tasks)
            self._apply_backpressure(at_capacity=room <= 0)
            batch = await self._consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=max(1, room)
            )
            spawned = 0
            for records in batch.values():
                for record in records:
                    self._spawn(record)
                    spawned += 1
                    if spawned % SPAWN_SLICE == 0:
                        # Let the loop run what is due (held records reaching their instant)
                        # between slices of new records, whose first step (parse, policy,
                        # secrets) would otherwise run back to back in one loop iteration:
                        # 250 of them, a tick's worth at 500 jobs/s, blocked the loop ~15 ms.
                        await asyncio.sleep(0)
            if time.monotonic() >= next_commit:
                await self.commit()
                next_commit = time.monotonic() + self._commit_interval_s

    async def drain(self, deadline_s: float) -> None:
        """Let in-flight records finish, up to a deadline, then commit what is done.

        A record cut off by the deadline stays uncommitted and is redelivered; its claim
        then tells the next worker whether it had started.
        """
        if self._tasks:
            log.info("waiting up to %.0f s for %d in-flight records", deadline_s, len(self._tasks))
            _, pending = await asyncio.wait(self._tasks, timeout=deadline_s)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("cancelled %d records still running at the deadline", len(pending))
                await asyncio.wait(pending)
        await self.commit()

    async def commit(self, only: set[TopicPartition] | None = None) -> None:
        """Commit the contiguous prefix of done offsets of each assigned partition.

        A failed commit is logged and retried at the next interval: redelivering a
        few done records is harmless, since their claims refuse to run them again.
        """
        assignment = self._consumer.assignment()
        offsets = {
            tp: offset
            for tp, offset in self._tracker.committable().items()
            if tp in assignment and (only is None or tp in only)
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("commit of %s failed: %s", offsets, exc)
            return
        self._tracker.committed(offsets)

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        self.revocations += 1
        await self.commit(only=revoked)
        self._tracker.drop(revoked)
        log.info("partitions revoked: %s", sorted(revoked))

    def _apply_backpressure(self, *, at_capacity: bool) -> None:
        # Re-applied on every fetch: a rebalance assigns partitions unpaused.
        assignment = self._consumer.assignment()
        if at_capacity:
            self._consumer.pause(*assignment)
        elif paused := self._consumer.paused():
            self._consumer.resume(*paused)

    def _spawn(self, record: ConsumerRecord) -> None:
        ticket = self._tracker.start(TopicPartition(record.topic, record.partition), record.offset)
        task = asyncio.create_task(
            self._run(record, ticket), name=f"kjs-record-{record.partition}-{record.offset}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, record: ConsumerRecord, ticket: Ticket) -> None:
        # Not a `finally`: a record cut off by shutdown (CancelledError) stays uncommitted.
        try:
            await self._process(record)
        except Exception:
            # `process` reports its own failures; reaching here is a bug. Going on loses
            # this record's outcome, but never stops the partition (invariant 5).
            log.exception(
                "record %s[%d]@%d escaped processing", record.topic, record.partition, record.offset
            )
        self._tracker.done(ticket)


class _CommitBeforeRevoke(ConsumerRebalanceListener):
    """Commits what is done before a partition moves, so the next owner does not redeliver
    it, and forgets the partition's offsets, which are no longer ours to commit."""

    def __init__(self, loop: LaneLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._loop.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions assigned: %s", sorted(assigned))
        self._loop.assignments += 1
        self._loop.assigned.set()

"""What a worker sends back to Kafka: the result of each attempt, and dead letters.

Both are produced with acks=all and awaited: a record's offset is only committed once what
it produced is durable, so a crash before the ack redelivers the record instead of losing
its result.

Results are batched per shard (``ResultBatch``), because in a burst one record per attempt
was a tenth of the worker's CPU, and as much again in the shard that reads them:

1. The first result opens a linger of ``LINGER_S`` for every shard: when it ends, each
   shard's open batch leaves, all in one produce request, and the next result opens the
   next linger. A batch also leaves at once when it holds ``MAX_RESULTS`` results or
   ``MAX_BATCH_BYTES`` of them. (A linger per shard, of 10 ms, made a steady 500 jobs/s
   cost 130 to 210 produce requests a second, and as many fetches of the scheduler.)
2. The batch is one record on the partition of ``jobs.results`` that each of its results,
   keyed by user_id, would have gone to (the owning shard's), with header
   ``kjs-kind: result-batch``; it is sent until acked, like any record here.
3. Each ``result()`` call returns once the batch holding its result is acked, so the caller
   commits its due event's offset and hands over its lease only then, as before.

A result that would not fit a batch (an excerpt near the limit) is sent as a record of its
own. Batching adds at most ``LINGER_S`` to when the shard learns a result; a job's start is
not delayed by it (results are reported after the target call, outside the slot).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from core import tracing
from core.backoff import DEFAULT_BACKOFF, Backoff
from schemas.v1.events import KIND_HEADER, RESULT_BATCH_KIND, ResultEvent
from topics.catalog import Catalog
from topics.dlq import DeadLetter
from topics.partitioner import partition_for

log = logging.getLogger(__name__)


# Results are reported after the run, so this delays no start; it delays when the shard
# records the result (status queries, concurrency slots, the fair dispatch window).
LINGER_S = 0.1
MAX_RESULTS = 500
# Well under the broker's default max.message.bytes (1 MB).
MAX_BATCH_BYTES = 256 * 1024
_BATCH_HEADERS = ((KIND_HEADER, RESULT_BATCH_KIND),)


@dataclass
class _Batch:
    partition: int
    values: list[bytes] = field(default_factory=list)
    # The results' trace contexts (W3C traceparent) by execution id, for those that have one.
    traceparents: dict[str, str] = field(default_factory=dict)
    size: int = 0
    acked: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Reporter:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        cat: Catalog,
        backoff: Backoff = DEFAULT_BACKOFF,
        *,
        linger_s: float = LINGER_S,
    ) -> None:
        self._producer = producer
        self._results_topic = cat.results.name
        self._dlq_topic = cat.dlq.name
        self._backoff = backoff
        self._linger_s = linger_s
        self._open: dict[int, _Batch] = {}
        # The end of the current linger, which sends every open batch; None: none open.
        self._linger: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def result(self, event: ResultEvent, traceparent: str | None = None) -> None:
        """Report one attempt's result, with its run's trace context if it has one; returns
        once it is acked.

        It goes where a record keyed by its user_id would (murmur2): the partition number of
        the user's commands, the shard that owns the user. A result too large to share a
        record, or sent before the producer knows the topic's partitions, is sent keyed.
        """
        value = event.model_dump_json().encode()
        key = event.user_id.encode()
        partitions = self._producer.client.cluster.partitions_for_topic(self._results_topic)
        if not partitions or len(value) > MAX_BATCH_BYTES // 2:
            await self._send(
                self._results_topic,
                key=key,
                value=value,
                headers=tracing.kafka_headers(traceparent) or (),
                what=f"result of {event.execution_id}",
            )
            return
        partition = partition_for(key, len(partitions))
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = _Batch(partition)
        if self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(self._linger_s, self._close_all)
        batch.values.append(value)
        batch.size += len(value) + 1
        if traceparent is not None:
            batch.traceparents[str(event.execution_id)] = traceparent
            batch.size += len(traceparent) + 42
        if len(batch.values) >= MAX_RESULTS or batch.size >= MAX_BATCH_BYTES:
            self._close(batch)
        # Shielded: a caller cut off by shutdown must not cancel its batch-mates' ack.
        await asyncio.shield(batch.acked)

    def _close_all(self) -> None:
        """End the linger: send every open batch (queued together, so the producer sends
        them in one request)."""
        self._linger = None
        for batch in list(self._open.values()):
            self._close(batch)

    def _close(self, batch: _Batch) -> None:
        """Stop adding to ``batch`` and send it (a no-op for a batch already closed)."""
        if self._open.get(batch.partition) is not batch:
            return
        del self._open[batch.partition]
        task = asyncio.create_task(self._send_batch(batch), name="kjs-results")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_batch(self, batch: _Batch) -> None:
        # Written out rather than built as a ResultBatch: each value is already a validated
        # ResultEvent's JSON, and the shard validates the batch when it reads it.
        value = (
            b'{"version":1,"results":['
            + b",".join(batch.values)
            + b'],"traceparents":'
            + json.dumps(batch.traceparents).encode()
            + b"}"
        )
        try:
            await self._send(
                self._results_topic,
                key=None,
                value=value,
                headers=_BATCH_HEADERS,
                what=f"{len(batch.values)} results for partition {batch.partition}",
                partition=batch.partition,
            )
        except asyncio.CancelledError:
            batch.acked.cancel()
            raise
        except Exception as exc:
            # The callers see it; the record tasks that wait on this batch report it.
            batch.acked.set_exception(exc)
            return
        batch.acked.set_result(None)

    async def close(self, grace_s: float = 5.0) -> None:
        """Send the open batches and wait up to ``grace_s`` for those in flight (before the
        producer stops); a batch still unacked then is cancelled, and its records stay
        uncommitted, so their results are reported again after a restart."""
        if self._linger is not None:
            self._linger.cancel()
        self._close_all()
        if self._sending:
            _, late = await asyncio.wait(self._sending, timeout=grace_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)

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
        partition: int | None = None,
    ) -> None:
        """Send until acked. The attempt already ran, so giving up would lose its outcome;
        during a broker outage this holds the record (and its offset) instead."""
        failures = 0
        while True:
            try:
                await self._producer.send_and_wait(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers) or None,
                    partition=partition,
                )
                return
            except KafkaError as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning("producing %s failed (%s); retrying in %.2f s", what, exc, delay)
                await asyncio.sleep(delay)

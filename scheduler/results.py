"""Record workers' results, from ``jobs.results``, on the shard that owns the tenant."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from opentelemetry.trace import Span
from pydantic import ValidationError

from core import tracing
from core.backoff import retry_delay
from core.clock import SYSTEM_CLOCK, Clock
from scheduler.commands import REROUTED_FROM, format_errors
from scheduler.deadletters import dead_letter
from scheduler.kafka_io import Sender, send_to_partition
from scheduler.metrics import RESULTS, RETRIES
from scheduler.model import Failure, Recorded
from scheduler.outages import until_available
from scheduler.records import Record
from scheduler.shards import NotOwned, Shards
from scheduler.store.results import record_result, record_successes
from scheduler.store.shards import Fenced
from schemas.v1.events import ResultBatch, ResultEvent, read_result_record
from schemas.v1.jobs import RetryPolicy
from topics.catalog import Catalog
from topics.dlq import DEAD_LETTERS, DeadLetter
from topics.partitioner import partition_for

log = logging.getLogger(__name__)
JOB_ID_HEADER = "kjs-job-id"


def decide_retry(failure: Failure) -> float | None:
    """Seconds until the next attempt, or ``None``: not retryable, or out of attempts."""
    if not failure.result.retryable:
        return None
    policy = RetryPolicy.model_validate(failure.retry)
    return retry_delay(policy, failure.attempt, failure.result.retry_after_s, failure.execution_id)


def exhausted_letter(failure: Failure, record: Record) -> DeadLetter:
    result = failure.result
    why = (
        f"failed after {failure.attempt} attempt(s)"
        if result.retryable
        else f"failed, not retryable (attempt {failure.attempt})"
    )
    value = {
        "kind": "execution_failed",
        "job_id": str(failure.job_id),
        "user_id": result.user_id,
        "execution_id": str(failure.execution_id),
        "attempts": failure.attempt,
        "last_error": result.error,
        "http_status": result.http_status,
        "replay": {"type": "trigger", "user_id": result.user_id, "job_id": str(failure.job_id)},
    }
    return DeadLetter(
        reason=f"{why}: {result.error or 'no error text'}",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=result.user_id.encode(),
        value=json.dumps(value).encode(),
    )


@dataclass
class ResultHandler:
    shards: Shards
    pool: asyncpg.Pool
    sender: Sender
    catalog: Catalog
    # Now, for when a retry or a released buffered run is due.
    clock: Clock = SYSTEM_CLOCK

    async def handle_batch(self, records: list[Record]) -> list[str]:
        """Record a batch of ``jobs.results`` records.

        1. A record on another partition than its results' tenants' (a worker that counted
           partitions before a resize grew them) is re-routed to theirs.
        2. A record holds one ``ResultEvent``, or many in a ``ResultBatch`` (workers batch
           them per partition, ``workers.reports``); one that holds neither is
           dead-lettered whole.
        3. The results left are recorded (``record``).
        """
        outcomes: list[str] = []
        held: list[tuple[Record, ResultBatch]] = []
        for record in records:
            if await self._rerouted(record):
                outcomes.append("rerouted")
                continue
            try:
                read = read_result_record(record.value, record.headers)
            except ValidationError as exc:
                outcomes.append(await self.handle_invalid(record, exc))
                continue
            here = await self._reroute_misplaced(record, read)
            outcomes += ["rerouted"] * (len(read.results) - len(here))
            if here:
                held.append((record, read.model_copy(update={"results": here})))
        return outcomes + await self.record(held)

    async def record(self, held: list[tuple[Record, ResultBatch]]) -> list[str]:
        """Record the results read from records of this shard's partitions: a partition's
        successes in one transaction, the rest (and repeats) one by one."""
        outcomes: list[str] = []
        by_shard: dict[int, dict[UUID, tuple[Record, ResultEvent]]] = {}
        singles: list[tuple[Record, ResultEvent]] = []
        traces: dict[UUID, str] = {}
        for record, batch in held:
            traces.update(batch.traceparents)
            successes = by_shard.setdefault(record.partition, {})
            for result in batch.results:
                if result.status != "succeeded" or result.execution_id in successes:
                    singles.append((record, result))
                else:
                    successes[result.execution_id] = (record, result)
        for partition, found in by_shard.items():
            if not found:
                continue
            spans = _record_spans(traces.get(i) for i in found)
            try:
                leftover = await self._record_successes(partition, [r for _, r in found.values()])
            finally:
                for span in spans:
                    tracing.end(span)
            done = len(found) - len(leftover)
            RESULTS.labels("recorded").inc(done)
            outcomes += ["recorded"] * done
            singles += [found[r.execution_id] for r in leftover]
        for record, result in singles:
            outcomes.append(await self.handle(record, result, traces.get(result.execution_id)))
        return outcomes

    async def handle_invalid(self, record: Record, exc: ValidationError) -> str:
        reason = format_errors(exc).replace("invalid command", "invalid result")
        await until_available(
            lambda: dead_letter(self.sender, self.catalog.dlq.name, record, reason),
            "dead letter",
        )
        RESULTS.labels("rejected").inc()
        return "rejected"

    async def _rerouted(self, record: Record) -> bool:
        """Re-produce a result that sits on another partition than its tenant's (a worker
        that produced before it learned of a resize's new partitions) to the tenant's, where
        its execution now is; the shard that owns it records it."""
        if record.key is None:
            return False
        count = self.shards.routed_by(self.catalog.results.partitions)
        home = partition_for(record.key, count)
        if home == record.partition:
            return False
        headers = [*record.headers, (REROUTED_FROM, record.source.encode())]
        await until_available(
            lambda: send_to_partition(
                self.sender, record.topic, record.key, record.value, home, headers
            ),
            f"re-route {record.source}",
        )
        RESULTS.labels("rerouted").inc()
        return True

    async def _reroute_misplaced(self, record: Record, held: ResultBatch) -> list[ResultEvent]:
        """The results of a batch that belong on ``record``'s partition; the others (a
        worker batched them by a partition count a resize has since grown) are produced
        one by one, keyed, to their tenants' partitions, as ``_rerouted`` does for a
        single result."""
        count = self.shards.routed_by(self.catalog.results.partitions)
        here: list[ResultEvent] = []
        for result in held.results:
            key = result.user_id.encode()
            home = partition_for(key, count)
            if home == record.partition:
                here.append(result)
                continue
            headers = [
                (REROUTED_FROM, record.source.encode()),
                *(tracing.kafka_headers(held.traceparents.get(result.execution_id)) or ()),
            ]
            value = result.model_dump_json().encode()
            send = functools.partial(
                send_to_partition, self.sender, record.topic, key, value, home, headers
            )
            await until_available(send, f"re-route a result of {record.source}")
            RESULTS.labels("rerouted").inc()
        return here

    async def _record_successes(
        self, partition: int, results: list[ResultEvent]
    ) -> list[ResultEvent]:
        shard = await self.shards.get(partition)
        leftover = await until_available(
            lambda: record_successes(self.pool, partition, shard.epoch, results),
            f"results of shard {partition}",
        )
        # Their concurrency slots and dispatch-window places are free.
        shard.timer.finished([r.execution_id for r in results])
        return leftover

    async def handle(
        self, record: Record, result: ResultEvent, traceparent: str | None = None
    ) -> str:
        """Record one result read from ``record``; returns ``recorded``, ``retrying``,
        ``exhausted``, ``duplicate`` or ``rejected``. With tracing on, the ``record`` span,
        child of the result's ``traceparent`` (the worker's run span)."""
        try:
            span = _record_span(traceparent) if tracing.enabled() else None
            try:
                outcome = await self._handle(record, result)
            finally:
                tracing.end(span)
        except (Fenced, NotOwned):
            raise
        except Exception as exc:
            # As for commands: one result that cannot be recorded must not stop the shard.
            log.exception("result %s could not be recorded", record.source)
            reason = f"could not record: {exc!r}"
            await until_available(
                lambda: dead_letter(self.sender, self.catalog.dlq.name, record, reason),
                "dead letter",
            )
            outcome = "rejected"
        RESULTS.labels(outcome).inc()
        return outcome

    async def _handle(self, record: Record, result: ResultEvent) -> str:
        shard = await self.shards.get(record.partition)

        async def on_exhausted(failure: Failure) -> None:
            letter = exhausted_letter(failure, record)
            headers = [*letter.headers(), (JOB_ID_HEADER, str(failure.job_id).encode())]
            ack = await self.sender.send(
                self.catalog.dlq.name, letter.key, letter.value, headers=headers
            )
            await ack
            DEAD_LETTERS.labels("exhausted").inc()

        async def apply() -> Recorded | None:
            return await record_result(
                self.pool,
                record.partition,
                shard.epoch,
                result,
                decide_retry,
                on_exhausted,
                self.clock(),
            )

        recorded = await until_available(apply, f"result {record.source}")
        shard.timer.finished([result.execution_id])
        if recorded is None:
            return "duplicate"
        for run in (recorded.retry, recorded.released):
            # A retry of this execution, or (overlap = buffer_one) the buffered next run.
            if run is not None:
                shard.timer.offer_pending(run.execution_id, run.due_at)
        if recorded.exhausted is not None:
            return "exhausted"
        if recorded.retry is not None:
            RETRIES.inc()
            return "retrying"
        return "recorded"


def _record_span(traceparent: str | None) -> Span | None:
    return tracing.start("record", traceparent, None, tracing.CONSUMER)


def _record_spans(traceparents: Iterable[str | None]) -> Sequence[Span | None]:
    """The ``record`` spans of a batch of results (none with tracing off)."""
    if not tracing.enabled():
        return ()
    return [_record_span(t) for t in traceparents]

"""Record workers' results, from ``jobs.results``, on the shard that owns the tenant."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from pydantic import ValidationError

from core.backoff import retry_delay
from core.clock import SYSTEM_CLOCK, Clock
from scheduler.commands import format_errors
from scheduler.deadletters import dead_letter
from scheduler.kafka_io import Sender
from scheduler.metrics import RESULTS, RETRIES
from scheduler.model import Failure, Recorded
from scheduler.outages import until_available
from scheduler.records import Record
from scheduler.shards import NotOwned, Shards
from scheduler.store.results import record_result, record_successes
from scheduler.store.shards import Fenced
from schemas.v1.events import ResultEvent
from schemas.v1.jobs import RetryPolicy
from topics.catalog import Catalog
from topics.dlq import DEAD_LETTERS, DeadLetter

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
        """Record a batch: a shard's successes in one transaction, the rest one by one."""
        outcomes: list[str] = []
        by_shard: dict[int, dict[UUID, Record]] = {}
        parsed: dict[UUID, ResultEvent] = {}
        singles: list[Record] = []
        for record in records:
            try:
                result = ResultEvent.model_validate_json(record.value or b"")
            except ValidationError:
                singles.append(record)  # the one-by-one path dead-letters it
                continue
            if result.status != "succeeded" or result.execution_id in parsed:
                singles.append(record)
                continue
            parsed[result.execution_id] = result
            by_shard.setdefault(record.partition, {})[result.execution_id] = record
        for partition, batch in by_shard.items():
            leftover = await self._record_successes(partition, [parsed[i] for i in batch])
            done = len(batch) - len(leftover)
            RESULTS.labels("recorded").inc(done)
            outcomes += ["recorded"] * done
            singles += [batch[r.execution_id] for r in leftover]
        for record in singles:
            outcomes.append(await self.handle(record))
        return outcomes

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

    async def handle(self, record: Record) -> str:
        """Record one result; returns ``recorded``, ``retrying``, ``exhausted``,
        ``duplicate`` or ``rejected``."""
        try:
            outcome = await self._handle(record)
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

    async def _handle(self, record: Record) -> str:
        try:
            result = ResultEvent.model_validate_json(record.value or b"")
        except ValidationError as exc:
            reason = format_errors(exc).replace("invalid command", "invalid result")
            await until_available(
                lambda: dead_letter(self.sender, self.catalog.dlq.name, record, reason),
                "dead letter",
            )
            return "rejected"
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

"""One due-event record, from parse to reported result."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from schemas.v1.events import DueEvent, ResultEvent
from schemas.v1.targets import Target
from topics.dlq import DeadLetter
from workers.claims import Claimer
from workers.reports import Reporter
from workers.targets import Attempt, Outcome, TargetRegistry
from workers.timing import hold_until, utc_now

log = logging.getLogger(__name__)

# A target without its own timeout (``kafka``) is bounded by the producer's request timeout.
DEFAULT_RUN_TIMEOUT_S = 10.0


def run_timeout_s(target: Target) -> float:
    return float(getattr(target, "timeout_s", DEFAULT_RUN_TIMEOUT_S))


def parse_due_event(record: ConsumerRecord) -> DueEvent | DeadLetter:
    """The record's event, or the dead letter to send instead when it is not one."""
    try:
        if record.value is None:
            raise ValueError("record has no value")
        return DueEvent.model_validate_json(record.value)
    except (ValidationError, ValueError) as exc:
        return dead_letter_for(record, f"invalid DueEvent: {exc}")


def dead_letter_for(record: ConsumerRecord, reason: str) -> DeadLetter:
    return DeadLetter(
        reason=reason,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
    )


@dataclass(frozen=True)
class ExecutionService:
    """Everything one record needs; shared by all of a worker's record tasks."""

    claimer: Claimer
    registry: TargetRegistry
    reporter: Reporter
    worker_id: str
    # Bounds the executions between claim and report (``worker_concurrency``). A record
    # held for its instant takes no slot: else a lane's throughput would be capped at
    # concurrency / lead (64 / 250 ms = 256 executions/s), whatever the targets cost.
    slots: asyncio.Semaphore

    async def process(self, record: ConsumerRecord) -> None:
        """Take one due-event record as far as it goes; returning means its offset may be
        committed. Raises only ``CancelledError`` (shutdown), which leaves it uncommitted.

        1. Parse the value as a ``DueEvent``. A record that does not parse is sent to the
           dead-letter topic, with the reason, and is done: a poison record never stops
           the partition.
        2. Hold the event until its ``scheduled_for`` (wall clock), then take a slot.
        3. Claim the execution: queued -> running, a compare-and-set in Postgres (batched
           with the claims of other records due together), retried while Postgres is
           unreachable. Nothing claimed (already started, finished or cancelled) means
           done without running: at most one start.
        4. Run the target through the registry. Its failures are an outcome, not an
           exception.
        5. Report the attempt as one ``ResultEvent`` on ``jobs.results`` and wait for the
           ack. The owning scheduler shard records the final status from it.

        The caller then marks the offset done, and the commit loop commits the contiguous
        prefix of done offsets (``workers.offsets``).
        """
        parsed = parse_due_event(record)
        if isinstance(parsed, DeadLetter):
            log.warning(
                "dead-lettering %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                parsed.reason,
            )
            await self.reporter.dead_letter(parsed)
            return
        try:
            await self._execute(parsed)
        except Exception as exc:
            # A bug or a non-outage database error: park the record where an operator
            # sees it instead of blocking its partition's commits for ever.
            log.exception("execution %s failed inside the worker", parsed.execution_id)
            await self.reporter.dead_letter(dead_letter_for(record, f"worker error: {exc!r}"))

    async def _execute(self, event: DueEvent) -> None:
        await hold_until(event.scheduled_for)
        async with self.slots:
            await self._claim_run_report(event)

    async def _claim_run_report(self, event: DueEvent) -> None:
        claimed = await self.claimer.claim(event.execution_id, run_timeout_s(event.target))
        if claimed is None:
            log.info("execution %s is not queued any more; not running it", event.execution_id)
            return
        started_at = utc_now()
        log.debug(
            "execution %s started %.1f ms after its instant",
            event.execution_id,
            (started_at - event.scheduled_for).total_seconds() * 1000,
        )
        outcome = await self._run(event)
        await self.reporter.result(self._result(event, outcome, started_at))

    async def _run(self, event: DueEvent) -> Outcome:
        attempt = Attempt(event.execution_id, event.job_id, event.user_id, event.attempt)
        try:
            return await self.registry.run(event.target, attempt)
        except Exception as exc:
            # The execution is claimed: it must be reported, whatever the runner did.
            log.exception("runner for %s raised", event.target.type)
            return Outcome.failure(f"runner error: {exc!r}", retryable=True)

    def _result(self, event: DueEvent, outcome: Outcome, started_at: datetime) -> ResultEvent:
        return ResultEvent(
            execution_id=event.execution_id,
            job_id=event.job_id,
            user_id=event.user_id,
            attempt=event.attempt,
            status="succeeded" if outcome.succeeded else "failed",
            started_at=started_at,
            finished_at=utc_now(),
            worker=self.worker_id,
            http_status=outcome.http_status,
            output_excerpt=outcome.output_excerpt,
            error=outcome.error,
            retryable=outcome.retryable,
        )

"""One due-event record, from parse to reported result."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel, ValidationError

from core import tracing
from core.clock import utcnow
from core.secrets import (
    SECRETS,
    SecretBox,
    SecretError,
    fill_placeholders,
    is_sealed,
    scrub,
    secret_values,
)
from schemas.v1.events import DueEvent, ResultEvent
from topics.dlq import DEAD_LETTERS, DeadLetter
from workers.claims import COALESCE_S, Claimer
from workers.leases import LeaseKeeper
from workers.metrics import (
    DURATION,
    EXECUTIONS,
    IN_FLIGHT,
    LATENESS,
    SKIPPED_REDELIVERIES,
)
from workers.policy import TargetGuard
from workers.reports import Reporter
from workers.targets import Attempt, Outcome, TargetRegistry
from workers.timing import hold_until

log = logging.getLogger(__name__)

# How long an attempt cut off by shutdown may take to report itself as interrupted.
INTERRUPT_REPORT_S = 5.0
# How long before its instant an execution is claimed. The claim's round trip to Postgres is
# then paid before the instant, not in the job's lateness, and a burst's claims go in large
# batches while nothing runs yet (10,000 claims take about a second on a busy 2-core
# machine). A cancel must land before the claim to stop a run, so this is also how close
# to its instant an execution can still be cancelled. The shard's lead (3 s by default)
# must exceed it, or the claim happens on arrival, late by the difference.
CLAIM_AHEAD_S = 1.0
CLAIM_AHEAD = timedelta(seconds=CLAIM_AHEAD_S)


def start_instant(event: DueEvent) -> datetime:
    """When the attempt may start: its occurrence's time, or later for a retry's backoff."""
    if event.not_before is not None and event.not_before > event.scheduled_for:
        return event.not_before
    return event.scheduled_for


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


T = TypeVar("T", bound=BaseModel)


def opened(secrets: SecretBox, target: T, user_id: str) -> T:
    """The target as it is to run: its sealed secrets opened for the job's tenant and its
    ``{{secrets.NAME}}`` placeholders filled (core.secrets); as it is when it has neither."""
    data = target.model_dump(mode="json")
    if not is_sealed(data) and not data.get(SECRETS):
        return target
    return type(target).model_validate(fill_placeholders(secrets.open_target(data, user_id)))


def scrubbed(outcome: Outcome, target: BaseModel) -> Outcome:
    """The outcome without the target's secret values in its excerpt or error (a target that
    echoes its Authorization header must not put it in the execution log)."""
    values = secret_values(target.model_dump(mode="json"))
    if not values:
        return outcome
    return replace(
        outcome,
        output_excerpt=scrub(outcome.output_excerpt, values),
        error=scrub(outcome.error, values),
    )


@dataclass(frozen=True)
class ExecutionService:
    """Everything one record needs; shared by all of a worker's record tasks."""

    claimer: Claimer
    registry: TargetRegistry
    reporter: Reporter
    guard: TargetGuard
    leases: LeaseKeeper
    worker_id: str
    # Bounds the executions between claim and report (``worker_concurrency``). A record
    # held for its instant takes no slot: else a lane's throughput would be capped at
    # concurrency / lead (64 / 250 ms = 256 executions/s), whatever the targets cost.
    slots: asyncio.Semaphore
    secrets: SecretBox = field(default_factory=SecretBox)

    async def process(self, record: ConsumerRecord) -> None:
        """Take one due-event record as far as it goes; returning means its offset may be
        committed. Raises only ``CancelledError`` (shutdown), which leaves it uncommitted.

        1. Parse the value as a ``DueEvent``. A record that does not parse is sent to the
           dead-letter topic, with the reason, and is done: a poison record never stops
           the partition.
        2. Hold the event until ``CLAIM_AHEAD_S`` before its start instant: its
           ``scheduled_for``, or its ``not_before`` when that is later (a retry's backoff),
           on the wall clock.
        3. Claim the execution: queued -> running with a short lease, a compare-and-set in
           Postgres (batched with the claims of other records due together), retried while
           Postgres is unreachable. Nothing claimed (already started, finished or
           cancelled) means done without running: at most one start.
        4. Hold the lease (the ``LeaseKeeper`` extends it, batched, until the shard has the
           result), hold until the instant, then take a slot: a claimed execution waiting
           for a slot keeps its lease, so overload turns into lateness, never into a
           lapsed lease and a second run.
        5. Check the target against the operator's policy; a refusal is the outcome.
           Otherwise run it through the registry; its failures are an outcome too.
        6. Report the attempt as one ``ResultEvent`` on ``jobs.results`` and wait for the
           ack; the lease is then handed over (``LeaseKeeper.release(reported=True)``).
           The owning scheduler shard records the final status from the result.
        7. Cut off by shutdown after the start: report the attempt as interrupted (failed,
           retryable, so the shard schedules the next attempt with its backoff instead of
           waiting for the lease to lapse), within ``INTERRUPT_REPORT_S``, and leave the
           record uncommitted (its redelivery finds the execution claimed and skips it).
           Cut off between the claim and the start: nothing ran, so nothing is reported;
           the lease lapses and the shard re-dispatches the execution with the same id.

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
            DEAD_LETTERS.labels("due").inc()
            return
        try:
            await self._execute(parsed, tracing.from_headers(record.headers))
        except Exception as exc:
            # A bug or a non-outage database error: park the record where an operator
            # sees it instead of blocking its partition's commits for ever.
            log.exception(
                "execution %s failed inside the worker", parsed.execution_id, extra=_context(parsed)
            )
            await self.reporter.dead_letter(dead_letter_for(record, f"worker error: {exc!r}"))
            DEAD_LETTERS.labels("worker").inc()

    async def _execute(self, event: DueEvent, traceparent: str | None = None) -> None:
        """``traceparent``: the due event's (its fire span's), parent of the claim and run
        spans (docs/tracing.md)."""
        instant = start_instant(event)
        await hold_until(instant - CLAIM_AHEAD)
        early = (instant - utcnow()).total_seconds() > COALESCE_S
        span = tracing.start("claim", traceparent, None, tracing.CONSUMER)
        if traceparent is None and span is not None:
            traceparent = tracing.passed_on(span, None)  # untraced event: one trace from here
        try:
            claimed = await self.claimer.claim(event.execution_id, urgent=not early)
        finally:
            tracing.end(span)
        if claimed is None:
            log.info(
                "execution %s is not queued any more; not running it",
                event.execution_id,
                extra=_context(event),
            )
            SKIPPED_REDELIVERIES.labels(event.lane).inc()
            return
        self.leases.hold(event.execution_id)
        reported = False
        try:
            await hold_until(instant)
            reported = await self._run_report(event, traceparent)
        finally:
            self.leases.release(event.execution_id, reported=reported)

    async def _run_report(self, event: DueEvent, traceparent: str | None = None) -> bool:
        """Run a claimed execution in a slot, then report it; True once its result is acked.

        The slot bounds the target calls only: the result's ack is awaited after the slot
        is free, else a lane would be capped at concurrency / ack latency (64 / 20 ms =
        3,200 jobs/s, whatever the targets cost), which is what bounded a burst before.
        """
        lane = event.lane
        started_at: datetime | None = None
        outcome: Outcome | None = None
        span = None
        try:
            async with self.slots:
                started_at = utcnow()
                span = tracing.start("run", traceparent, None, tracing.CLIENT)
                late_s = (started_at - start_instant(event)).total_seconds()
                LATENESS.labels(lane).observe(max(0.0, late_s))
                log.debug(
                    "execution %s started %.1f ms after its instant",
                    event.execution_id,
                    late_s * 1000,
                    extra=_context(event),
                )
                IN_FLIGHT.labels(lane).inc()
                try:
                    outcome = self.guard.refusal(event.target)
                    if outcome is None:
                        outcome = await self._run(event, tracing.outgoing(span, traceparent))
                finally:
                    IN_FLIGHT.labels(lane).dec()
            DURATION.labels(lane, event.target.type).observe(
                (utcnow() - started_at).total_seconds()
            )
            EXECUTIONS.labels(
                "succeeded" if outcome.succeeded else "failed", lane, event.target.type
            ).inc()
            await self.reporter.result(
                self._result(event, outcome, started_at),
                tracing.kafka_headers(tracing.passed_on(span, traceparent)),
            )
            return True
        except asyncio.CancelledError:
            # Not started: nothing ran, and the lapsed lease gives it back to the shard.
            if started_at is not None:
                await self._report_interrupted(event, outcome, started_at)
            raise
        finally:
            tracing.end(span)

    async def _run(self, event: DueEvent, traceparent: str | None = None) -> Outcome:
        attempt = Attempt(
            event.execution_id, event.job_id, event.user_id, event.attempt, traceparent
        )
        try:
            target = opened(self.secrets, event.target, event.user_id)
        except SecretError as exc:
            return Outcome.failure(str(exc), retryable=False)
        try:
            return scrubbed(await self.registry.run(target, attempt), target)
        except Exception as exc:
            # The execution is claimed: it must be reported, whatever the runner did.
            log.exception("runner for %s raised", event.target.type, extra=_context(event))
            return Outcome.failure(f"runner error: {exc!r}", retryable=True)

    async def _report_interrupted(
        self, event: DueEvent, outcome: Outcome | None, started_at: datetime
    ) -> None:
        """Report an attempt that shutdown cut off: its real outcome if the target had
        finished (the report was what got cut off), else a retryable interruption."""
        ran_s = (utcnow() - started_at).total_seconds()
        if outcome is None:
            outcome = Outcome.failure(
                f"interrupted: the worker shut down after {ran_s:.1f} s", retryable=True
            )
        log.warning(
            "interrupted execution %s (job %s, %s target, attempt %d) after %.1f s",
            event.execution_id,
            event.job_id,
            event.target.type,
            event.attempt,
            ran_s,
            extra=_context(event),
        )
        try:
            async with asyncio.timeout(INTERRUPT_REPORT_S):
                await self.reporter.result(self._result(event, outcome, started_at))
        except TimeoutError:
            log.error(
                "could not report interrupted execution %s; its lease will lapse",
                event.execution_id,
            )

    def _result(self, event: DueEvent, outcome: Outcome, started_at: datetime) -> ResultEvent:
        return ResultEvent(
            execution_id=event.execution_id,
            job_id=event.job_id,
            user_id=event.user_id,
            attempt=event.attempt,
            status="succeeded" if outcome.succeeded else "failed",
            started_at=started_at,
            finished_at=utcnow(),
            worker=self.worker_id,
            http_status=outcome.http_status,
            output_excerpt=outcome.output_excerpt,
            error=outcome.error,
            retryable=outcome.retryable,
            retry_after_s=outcome.retry_after_s,
        )


def _context(event: DueEvent) -> dict[str, object]:
    """The fields a JSON log line carries for an execution (see core/logs.py)."""
    return {
        "job_id": event.job_id,
        "execution_id": event.execution_id,
        "shard": event.shard,
        "lane": event.lane,
    }

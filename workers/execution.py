"""One due-event record, from parse to reported result."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

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
from schemas.v1.targets import TRUSTED_HOP, Target
from topics.dlq import DEAD_LETTERS, DeadLetter
from workers.claims import COALESCE_S, Claimer
from workers.leases import LeaseKeeper
from workers.metrics import SKIPPED_REDELIVERIES, AttemptMetrics
from workers.policy import TargetGuard
from workers.reports import Reporter
from workers.slots import Slots
from workers.targets import Attempt, Outcome, TargetRegistry
from workers.timing import Instants

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
        return DueEvent.model_validate_json(record.value, context=TRUSTED_HOP)
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
class Ready:
    """A due event made ready to run before its instant, so that at the instant only the
    target call is left: the policy's verdict, the target with its secrets opened, and the
    values to scrub from what it returns.

    Opening the secrets a lead ahead keeps the plaintext in this process a few seconds
    longer than opening them at the start would; it never leaves the process either way.
    """

    event: DueEvent
    # The outcome to report instead of running: the policy refused the target, or its
    # secrets do not open for this tenant. None means run ``target``.
    verdict: Outcome | None
    target: Target
    secret_values: frozenset[str] = frozenset()


def made_ready(event: DueEvent, guard: TargetGuard, secrets: SecretBox) -> Ready:
    """The policy check and the opening of the secrets, done once and before the instant."""
    refusal = guard.refusal(event.target)
    if refusal is not None:
        return Ready(event, refusal, event.target)
    data = event.target.model_dump(mode="json")
    if not is_sealed(data) and not data.get(SECRETS):
        # Nothing to open; an unsealed credential-like header is still scrubbed from output.
        return Ready(event, None, event.target, frozenset(secret_values(data)))
    values: frozenset[str] = frozenset()
    try:
        filled = fill_placeholders(secrets.open_target(data, event.user_id))
        values = frozenset(secret_values(filled))
        target = type(event.target).model_validate(filled, context=TRUSTED_HOP)
    except SecretError as exc:
        return Ready(event, Outcome.failure(str(exc), retryable=False), event.target)
    except ValueError as exc:
        # A secret that makes the target invalid (a URL, a header with a newline): the run
        # is claimed and reported failed like any refusal, never left queued unclaimed.
        # The error quotes the input: scrubbed of the secrets it holds.
        reason = scrub(f"the target with its secrets filled in is invalid: {exc}", values)
        return Ready(event, Outcome.failure(reason or "", retryable=False), event.target)
    return Ready(event, None, target, values)


def scrubbed(outcome: Outcome, values: frozenset[str]) -> Outcome:
    """The outcome without the target's secret values in its excerpt or error (a target that
    echoes its Authorization header must not put it in the execution log)."""
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
    # Bounds the target calls running at once (``worker_concurrency``). A record held for
    # its instant takes no slot: else a lane's throughput would be capped at concurrency /
    # lead (64 / 250 ms = 256 executions/s), whatever the targets cost. Reports wait while
    # runs due now wait for a slot (workers.slots).
    slots: Slots
    secrets: SecretBox = field(default_factory=SecretBox)
    # Holds records until their instants, waking those of one instant round-robin by tenant.
    instants: Instants = field(default_factory=Instants)
    _children: dict[tuple[str, str], AttemptMetrics] = field(default_factory=dict)

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
           ack; while runs due now wait for a slot, the report first waits for them, up to
           ``workers.slots.REPORT_DEFER_S`` (starts before bookkeeping). The lease is then
           handed over (``LeaseKeeper.release(reported=True)``).
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
        ready = made_ready(event, self.guard, self.secrets)
        instant = start_instant(event)
        await self.instants.hold_until(instant - CLAIM_AHEAD, event.user_id)
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
        self.leases.hold(event.execution_id, since=claimed.asked_at)
        reported = False
        try:
            await self.instants.hold_until(instant, event.user_id)
            reported = await self._run_report(ready, traceparent)
        finally:
            self.leases.release(event.execution_id, reported=reported)

    async def _run_report(self, ready: Ready, traceparent: str | None = None) -> bool:
        """Run a claimed execution in a slot, then report it; True once its result is acked.

        The slot bounds the target calls only: the result's ack is awaited after the slot
        is free, else a lane would be capped at concurrency / ack latency (64 / 20 ms =
        3,200 jobs/s, whatever the targets cost), which is what bounded a burst before.
        """
        event = ready.event
        metrics = self._metrics(event.lane, event.target.type)
        started_at: datetime | None = None
        outcome: Outcome | None = None
        span = None
        try:
            await self.slots.acquire()
            try:
                started_at = utcnow()
                span = tracing.start("run", traceparent, None, tracing.CLIENT)
                late_s = (started_at - start_instant(event)).total_seconds()
                metrics.lateness.observe(max(0.0, late_s))
                metrics.in_flight.inc()
                try:
                    outcome = ready.verdict or await self._run(
                        ready, tracing.outgoing(span, traceparent)
                    )
                finally:
                    metrics.in_flight.dec()
            finally:
                self.slots.release()
            finished_at = utcnow()
            metrics.duration.observe((finished_at - started_at).total_seconds())
            (metrics.succeeded if outcome.succeeded else metrics.failed).inc()
            # Starts first: the report waits while runs due now wait for a slot.
            await self.slots.quiet()
            await self.reporter.result(
                self._result(event, outcome, started_at, finished_at),
                tracing.passed_on(span, traceparent),
            )
            return True
        except asyncio.CancelledError:
            # Not started: nothing ran, and the lapsed lease gives it back to the shard.
            if started_at is not None:
                await self._report_interrupted(event, outcome, started_at)
            raise
        finally:
            tracing.end(span)

    async def _run(self, ready: Ready, traceparent: str | None = None) -> Outcome:
        event = ready.event
        attempt = Attempt(
            event.execution_id, event.job_id, event.user_id, event.attempt, traceparent
        )
        try:
            return scrubbed(await self.registry.run(ready.target, attempt), ready.secret_values)
        except Exception as exc:
            # The execution is claimed: it must be reported, whatever the runner did.
            log.exception("runner for %s raised", event.target.type, extra=_context(event))
            return Outcome.failure(f"runner error: {exc!r}", retryable=True)

    def _metrics(self, lane: str, target_type: str) -> AttemptMetrics:
        # A labelled child is looked up once per lane and target type, not per attempt.
        key = (lane, target_type)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = AttemptMetrics.of(lane, target_type)
        return found

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

    def _result(
        self,
        event: DueEvent,
        outcome: Outcome,
        started_at: datetime,
        finished_at: datetime | None = None,
    ) -> ResultEvent:
        return ResultEvent(
            execution_id=event.execution_id,
            job_id=event.job_id,
            user_id=event.user_id,
            attempt=event.attempt,
            status="succeeded" if outcome.succeeded else "failed",
            started_at=started_at,
            finished_at=finished_at or utcnow(),
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

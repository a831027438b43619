"""Firing: turn due jobs into execution rows, then into due events on the lanes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from opentelemetry.trace import Span
from pydantic import TypeAdapter

from core import tracing
from core.clock import SYSTEM_CLOCK, Clock
from scheduler.kafka_io import Sender
from scheduler.metrics import DISPATCH_LEAD, FIRED
from scheduler.model import DueJob, Fired, FiringJob, Occurrence, Skip
from scheduler.store.firing import mark_dispatched, undispatched
from schemas.v1.ids import execution_id_for
from schemas.v1.schedules import OnceSchedule, Schedule
from timetable.exclusions import excluded, has_exclusions
from timetable.occurrences import jitter_delay, next_run, occurrences
from topics.catalog import Catalog

log = logging.getLogger(__name__)
SCHEDULE: TypeAdapter[Schedule] = TypeAdapter(Schedule)


# How many missed occurrences one fire looks at; beyond it, skips are counted as "at least".
CATCHUP_SCAN = 1000
# How many skipped occurrences are recorded as rows (the rest only in the job's counter).
RECORDED_SKIPS = 10


def fire_trace(job: FiringJob, at: datetime, recurring: bool) -> tuple[Span | None, str | None]:
    """The fire span of an occurrence (tracing on) and the traceparent its runs get.

    A one-time job's run continues the trace it was submitted in. Each occurrence of a
    recurring job starts a trace of its own, linked to the submission's: one trace for a job
    that runs every minute for a year would hold half a million runs, which no trace viewer
    shows, and a run is what one looks at (docs/tracing.md). With tracing off the same
    shape is kept: a recurring job's occurrence gets new random ids.
    """
    if not tracing.enabled():
        if job.traceparent is None:
            return None, None  # the hot path: no trace, nothing made
        return None, tracing.new_trace(job.traceparent) if recurring else job.traceparent
    attributes = {"kjs.job_id": str(job.job_id), "kjs.scheduled_for": at.isoformat()}
    if recurring:
        span = tracing.start("fire", None, attributes, tracing.PRODUCER, link=job.traceparent)
    else:
        span = tracing.start("fire", job.traceparent, attributes, tracing.PRODUCER)
    return span, tracing.passed_on(span, None)


def _occurrence(
    job: FiringJob, at: datetime, jitter: timedelta | None = None, recurring: bool = True
) -> Occurrence:
    span, traceparent = fire_trace(job, at, recurring)
    return Occurrence(
        execution_id=execution_id_for(job.job_id, at, 1),
        job_id=job.job_id,
        user_id=job.user_id,
        attempt=1,
        scheduled_for=at,
        lane=job.priority,
        target=job.target,
        due_at=at + jitter if jitter else None,
        traceparent=traceparent,
        span=span,
        concurrency=job.concurrency,
    )


def fires_close(schedule: Schedule | dict[str, Any]) -> bool:
    """Whether a job's overlap policy decides at fire time (forbid, replace, buffer_one): such
    a job is fired close to its instant, when "is the previous run still running?" is the
    question that matters, not a whole lead ahead (scheduler.timer.CLOSE_LEAD)."""
    overlap = (
        schedule.get("overlap")
        if isinstance(schedule, dict)
        else getattr(schedule, "overlap", None)
    )
    return overlap not in (None, "allow")


def plan(
    job: FiringJob,
    now: datetime,
    lead: timedelta = timedelta(0),
    close_lead: timedelta | None = None,
) -> Fired:
    """What firing a due job means: which occurrences run, which are skipped, what next.

    1. List the occurrences due by now + lead, from the job's next_run_at on (more than one
       when the shard was down or the job paused).
    2. Catch-up: those later than ``misfire_grace_s`` are misfires. ``none`` skips them,
       ``latest`` runs the most recent one, ``all`` the ``max_catchup`` most recent ones;
       occurrences still within the grace run as usual. Every skip is counted and the most
       recent are recorded as 'skipped' executions. An excluded occurrence (``exclude``:
       dates, cron rules, named calendars) is skipped too, with its rule as the reason.
    3. ``max_runs`` caps what runs; with it reached (or past ``end_at``) the job has no next run.
    4. Overlap, when a previous run is not finished: ``allow`` runs anyway, ``forbid`` skips,
       ``replace`` cancels the previous one, ``buffer_one`` keeps the newest occurrence to
       run when the previous one finishes.
    """
    first = job.next_run_at
    if job.schedule.get("type") == "once":
        # The hot path of a burst of one-shot jobs: nothing to compute, so no parsing
        # (validating the stored schedule costs more than the rest of the fire).
        occurrence = _occurrence(job, first, recurring=False)
        return Fired(job.job_id, job.user_id, job.priority, [occurrence], None)
    schedule = SCHEDULE.validate_python(job.schedule)
    if isinstance(schedule, OnceSchedule):  # (not reached: the type check above)
        occurrence = _occurrence(job, first, recurring=False)
        return Fired(job.job_id, job.user_id, job.priority, [occurrence], None)
    close = fires_close(schedule)
    horizon = now + (close_lead if close and close_lead is not None else lead)
    due = [first, *occurrences(schedule, first, job.created_at, CATCHUP_SCAN, until=horizon)]
    scan_capped = len(due) > CATCHUP_SCAN
    grace = timedelta(seconds=schedule.misfire_grace_s)
    late = [o for o in due if now - o > grace]
    timely = [o for o in due if now - o <= grace]
    if schedule.catchup == "none":
        run = timely
    elif schedule.catchup == "latest":
        run = late[-1:] + timely
    else:
        run = late[-schedule.max_catchup :] + timely
    skipped = [Skip(o, "misfire: missed by more than misfire_grace_s") for o in due if o not in run]
    if has_exclusions(schedule):
        # Excluded occurrences (dates, cron rules, calendars) are skipped, with the rule.
        reasons = {o: excluded(schedule, o) for o in run}
        skipped += [Skip(o, reason) for o, reason in reasons.items() if reason is not None]
        run = [o for o in run if reasons[o] is None]
    if schedule.max_runs is not None:
        run = run[: max(0, schedule.max_runs - job.run_count)]
    done = schedule.max_runs is not None and job.run_count + len(run) >= schedule.max_runs
    nxt = (
        None
        if done
        else next_run(schedule, max(due[-1], now if scan_capped else due[-1]), job.created_at)
    )
    cancel_active, buffer = False, None
    if job.busy and run:
        if schedule.overlap == "forbid":
            skipped += [Skip(o, "overlap: the previous run has not finished") for o in run]
            run = []
        elif schedule.overlap == "replace":
            cancel_active = True
        elif schedule.overlap == "buffer_one":
            if job.buffered_for is None:
                buffer = run[-1]
                run = run[:-1]
            skipped += [Skip(o, "overlap: one run is already buffered") for o in run]
            run = []
    skipped.sort(key=lambda k: k.scheduled_for)
    return Fired(
        job_id=job.job_id,
        user_id=job.user_id,
        lane=job.priority,
        occurrences=[_occurrence(job, o, jitter_delay(schedule, job.job_id, o)) for o in run],
        next_run_at=nxt,
        skipped=skipped[-RECORDED_SKIPS:],
        skipped_total=len(skipped),
        cancel_active=cancel_active,
        buffer=buffer,
        next_due=None if nxt is None else effective_due(schedule, job.job_id, nxt),
        close=close,
    )


def effective_due(schedule: Schedule, job_id: UUID, nominal: datetime) -> datetime:
    """When an occurrence really starts: its time plus its jitter."""
    if isinstance(schedule, OnceSchedule):
        return nominal
    return nominal + jitter_delay(schedule, job_id, nominal)


def due_of(job: DueJob) -> datetime:
    return effective_due(SCHEDULE.validate_python(job.schedule), job.job_id, job.next_run_at)


class Dispatcher:
    """Sends due events for execution rows already written (the outbox's sending half)."""

    def __init__(
        self, pool: asyncpg.Pool, sender: Sender, cat: Catalog, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.clock = clock
        self._pool = pool
        self._sender = sender
        self._catalog = cat

    async def dispatch(self, shard: int, epoch: int, occurrences: list[Occurrence]) -> None:
        """Produce each occurrence's due event, then record that Kafka has it.

        1. Queue every due event on its lane topic (key = job_id), without waiting on each.
        2. Wait for all acknowledgements (acks=all).
        3. Mark the executions dispatched, fenced by the shard's ``epoch`` (``Fenced`` when
           another instance owns the shard now). A crash before this step leaves them in the
           outbox, and whoever owns the shard next re-sends them; a duplicate due event
           is harmless because a worker only runs an execution it claimed from 'queued'.

        A due event carries its occurrence's trace as its ``traceparent`` header; the fire
        spans (tracing on) end once Kafka has the events.
        """
        if not occurrences:
            return
        acks = []
        for occ in occurrences:
            acks.append(
                await self._sender.send(
                    self._catalog.due[occ.lane].name,  # type: ignore[index]
                    str(occ.job_id).encode(),
                    due_event_value(occ, shard),
                    headers=tracing.kafka_headers(occ.traceparent),
                )
            )
        await asyncio.gather(*acks)
        for occ in occurrences:
            tracing.end(occ.span)
        acked = self.clock()
        for occ in occurrences:
            FIRED.labels(occ.lane).inc()
            DISPATCH_LEAD.observe(((occ.due_at or occ.scheduled_for) - acked).total_seconds())
        await mark_dispatched(self._pool, shard, epoch, [o.execution_id for o in occurrences])


def due_event_value(occ: Occurrence, shard: int) -> bytes:
    """The ``DueEvent`` of an execution row, as the record's value.

    Written out with ``json`` rather than built as the pydantic model: every field was
    validated at the door (the target when its job was created or updated) and comes from
    the shard's own rows, and validating it again cost a tenth of the shard's CPU while
    firing. The worker validates the event it reads (``workers.execution``); a unit test
    holds this encoding to the model.
    """
    return json.dumps(
        {
            "version": 1,
            "execution_id": str(occ.execution_id),
            "job_id": str(occ.job_id),
            "user_id": occ.user_id,
            "attempt": occ.attempt,
            "scheduled_for": occ.scheduled_for.isoformat(),
            "lane": occ.lane,
            "target": occ.target,
            "shard": shard,
            "not_before": None if occ.due_at is None else occ.due_at.isoformat(),
        },
        separators=(",", ":"),
    ).encode()


async def resend_outbox(
    dispatcher: Dispatcher,
    pool: asyncpg.Pool,
    shard: int,
    epoch: int,
    age_s: float,
    queue: Callable[[list[Occurrence]], None] | None = None,
) -> int:
    """Re-send executions that were written but never acknowledged, older than ``age_s``;
    into ``queue`` (the fair dispatch) when given, else at once."""
    pending = await undispatched(pool, shard, age_s)
    if pending and queue is not None:
        queue(pending)
    elif pending:
        log.info("shard %s: re-sending %d undispatched executions", shard, len(pending))
        await dispatcher.dispatch(shard, epoch, pending)
    return len(pending)

"""What the scheduler reads and writes, as values: the rows it stores and the plans it makes.

Built by the scheduler's logic (``scheduler.commands`` a ``NewJob``, ``scheduler.firing`` a
``Fired``, ``scheduler.store.results`` a ``Recorded``), written and read by
``scheduler.store``. Plain frozen dataclasses; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from schemas.v1.events import ResultEvent


@dataclass(frozen=True)
class NewJob:
    """A created job's row, as ``scheduler.store.jobs.insert_jobs`` stores it."""

    job_id: UUID
    user_id: str
    shard: int
    name: str
    idempotency_key: str | None
    schedule: dict[str, Any]
    target: dict[str, Any]
    priority: str
    retry: dict[str, Any]
    next_run_at: datetime
    created_at: datetime
    source: str
    # The trace the job belongs to (W3C traceparent): its apply span's, or with tracing off
    # the one it was submitted with; None for none.
    traceparent: str | None = None
    concurrency: dict[str, Any] | None = None


@dataclass(frozen=True)
class Changed:
    """A job after a lifecycle change (pause, resume, update)."""

    status: str
    next_run_at: datetime | None
    schedule: dict[str, Any]


@dataclass(frozen=True)
class DueJob:
    """A job due within the timer's window."""

    job_id: UUID
    next_run_at: datetime
    schedule: dict[str, Any]


@dataclass(frozen=True)
class FiringJob:
    """A locked job row, input to the occurrence arithmetic done in Python."""

    job_id: UUID
    user_id: str
    schedule: dict[str, Any]
    target: dict[str, Any]
    priority: str
    next_run_at: datetime
    created_at: datetime
    run_count: int
    # An execution of this job is still pending, queued or running (for the overlap policy).
    busy: bool
    buffered_for: datetime | None
    traceparent: str | None = None
    # {"key", "limit"}, or None (scheduler.concurrency).
    concurrency: dict[str, Any] | None = None


@dataclass(frozen=True)
class Occurrence:
    """One execution row as the dispatcher needs it for the due event."""

    execution_id: UUID
    job_id: UUID
    user_id: str
    attempt: int
    scheduled_for: datetime
    lane: str
    target: dict[str, Any]
    # Set for a pending run (a retry, a trigger, a buffered run) and for a jittered
    # occurrence: it must not start before then.
    due_at: datetime | None = None
    # The trace its runs belong to (the due event's traceparent header); None for none.
    traceparent: str | None = None
    # Its fire span while it is being fired (tracing on), ended once Kafka has the due event.
    span: Any = field(default=None, compare=False, repr=False)
    # The job's {"key", "limit"}, when it has one (scheduler.concurrency).
    concurrency: dict[str, Any] | None = None


@dataclass(frozen=True)
class Skip:
    scheduled_for: datetime
    reason: str


@dataclass(frozen=True)
class Fired:
    """What to write for one due job: the occurrences to dispatch, those skipped, and the
    job's next state."""

    job_id: UUID
    user_id: str
    lane: str
    occurrences: list[Occurrence]
    next_run_at: datetime | None
    skipped: list[Skip] = field(default_factory=list)
    # Skipped in all, including those beyond the ones recorded as rows.
    skipped_total: int = 0
    cancel_active: bool = False
    buffer: datetime | None = None
    # next_run_at plus its jitter: when the timer must fire it.
    next_due: datetime | None = None
    # Fire the next run close to its instant, not a lead ahead (firing.fires_close).
    close: bool = False


@dataclass(frozen=True)
class PendingRun:
    """An execution stored as 'pending', to be queued and dispatched at ``due_at``: a retry
    of a failed attempt, a triggered run, or the run an ``overlap = buffer_one`` job kept."""

    execution_id: UUID
    due_at: datetime


@dataclass(frozen=True)
class Failure:
    """A failed attempt, as the retry decision needs it."""

    execution_id: UUID
    job_id: UUID
    attempt: int
    retry: dict[str, Any]
    result: ResultEvent


@dataclass(frozen=True)
class Recorded:
    """What recording a result led to: a retry of the failed attempt, the buffered run it
    released (``overlap = buffer_one``), the occurrence failing for good."""

    retry: PendingRun | None = None
    released: PendingRun | None = None
    exhausted: Failure | None = None

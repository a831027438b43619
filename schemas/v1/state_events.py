"""``jobs.events``: one event per state change of a job or an execution (docs/events.md).

Written by the owner of the change in the transaction that makes it (an outbox row,
``kjs_event_outbox``), published by the owning shard's relay: an event exists if and only if
its change committed. ``event_id`` is fixed when the row is written, so a redelivery (a relay
that crashed between Kafka's ack and its delete) repeats the same event, never a new one.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

JobEventType = Literal[
    "job.created",
    "job.updated",
    "job.paused",
    "job.resumed",
    "job.cancelled",
    # A one-time job (or a recurring one with no run left) took its last run's outcome.
    "job.finished",
]
ExecutionEventType = Literal[
    # A run waiting for its due time: a triggered run or a buffered one (overlap = buffer_one).
    "execution.pending",
    # Out to the workers: a fired occurrence, a due pending run, or a run put back after its
    # worker's lease lapsed (the same execution id, queued again).
    "execution.queued",
    "execution.started",
    "execution.succeeded",
    "execution.failed",
    # The next attempt of a failed one, pending until ``retry_at``.
    "execution.retry_scheduled",
    # The failed attempt was the occurrence's last: its dead letter is on jobs.dlq.
    "execution.dead_lettered",
    "execution.skipped",
    "execution.cancelled",
]
EventType = JobEventType | ExecutionEventType


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobState(_Model):
    """The job after the change, as the API shows it: secrets ``[redacted]``."""

    name: str
    status: str
    schedule: dict[str, Any]
    target: dict[str, Any]
    priority: str
    retry: dict[str, Any]
    next_run_at: AwareDatetime | None = None


class ExecutionState(_Model):
    """The execution after the change."""

    execution_id: UUID
    attempt: int = Field(ge=1)
    scheduled_for: AwareDatetime
    lane: str
    status: str
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    worker: str | None = None
    http_status: int | None = None
    # A failed attempt's error (secret values scrubbed by the worker).
    error: str | None = None
    # Why a skipped or cancelled run did not run.
    reason: str | None = None
    # When a pending run (a retry) becomes due.
    retry_at: AwareDatetime | None = None


class StateEvent(_Model):
    """Produced to ``jobs.events`` (key = job_id)."""

    version: Literal[1] = 1
    event_id: UUID
    type: EventType
    # When the change committed's transaction began (Postgres's clock).
    occurred_at: AwareDatetime
    job_id: UUID
    user_id: str
    shard: int = Field(ge=0)
    # Exactly one of the two, by the type's prefix.
    job: JobState | None = None
    execution: ExecutionState | None = None

    @model_validator(mode="after")
    def _state_of_its_kind(self) -> StateEvent:
        kind = self.type.split(".", 1)[0]
        if (self.job is not None, self.execution is not None) != (kind == "job", kind != "job"):
            raise ValueError(f"a {self.type} event carries the {kind} (only)")
        return self

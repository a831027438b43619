"""The shapes of the API's query strings and responses (contract v1, additive only).

Request bodies are the contract's own models (``schemas.v1``); these are the rest. Responses
are built from these models rather than from loose dicts, so ``/openapi.json``, which is
generated from them, describes exactly what the handlers send.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
)

from api.cursor import FIRST_PAGE, Cursor, decode_cursor
from schemas.v1.jobs import USER_ID, Concurrency, Priority, RetryPolicy, UserId
from schemas.v1.schedules import Schedule
from schemas.v1.statuses import ExecutionStatus, ShownJobStatus
from schemas.v1.targets import Target

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# Every time the API shows is RFC 3339 in UTC, whatever zone the database session used.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def _cursor(value: object) -> Cursor:
    if isinstance(value, Cursor):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return decode_cursor(value)


CursorParam = Annotated[
    Cursor,
    PlainValidator(_cursor),
    WithJsonSchema({"type": "string", "description": "next_cursor of the previous page"}),
]


class QueryModel(BaseModel):
    """A query string's parameters: all strings on the wire, converted leniently
    (``api.validation.validate_model``)."""

    # An unknown parameter is most likely a typo (``statuss=``): say so instead of ignoring it.
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    cursor: CursorParam | None = None

    @property
    def after(self) -> Cursor:
        """Where the page starts: after the cursor's row, or before every row."""
        return self.cursor or FIRST_PAGE


class ListJobsQuery(QueryModel):
    # Left out: the tenant of the request's credential.
    user_id: UserId | None = Field(default=None, min_length=1, max_length=128, pattern=USER_ID)
    status: ShownJobStatus | None = None


class ListExecutionsQuery(QueryModel):
    pass


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubmitAccepted(_Body):
    job_id: UUID
    status: Literal["accepted"] = "accepted"


class LifecycleAccepted(_Body):
    job_id: UUID
    action: Literal["pause", "resume", "trigger", "update"]
    status: Literal["accepted"] = "accepted"


class CancelAccepted(_Body):
    job_id: UUID
    status: Literal["cancelling"] = "cancelling"


class ExecutionView(_Body):
    execution_id: UUID
    scheduled_for: UtcDatetime
    attempt: int
    lane: Priority
    status: ExecutionStatus
    dispatched_at: UtcDatetime | None
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    worker: str | None
    http_status: int | None
    output_excerpt: str | None
    error: str | None


class ExecutionDetail(ExecutionView):
    """One execution with everything stored about it: ``GET /v1/executions/{execution_id}``."""

    job_id: UUID
    user_id: str
    shard: int
    created_at: UtcDatetime
    # When a pending retry may start; None for a first attempt ("at scheduled_for").
    due_at: UtcDatetime | None
    # Extended by the running worker's heartbeat; a lapsed one means the worker is gone.
    lease_until: UtcDatetime | None
    # A run of a backfill (POST /v1/jobs/{id}/backfill): a past occurrence run on request.
    backfill: bool = False


class JobView(_Body):
    job_id: UUID
    user_id: str
    name: str
    # The stored job status, except that a queued job whose latest attempt runs shows "running".
    status: ShownJobStatus
    next_run_at: UtcDatetime | None
    run_count: int
    created_at: UtcDatetime
    schedule: Schedule
    target: Target
    priority: Priority
    retry: RetryPolicy
    idempotency_key: str | None
    concurrency: Concurrency | None = None
    last_execution: ExecutionView | None


class JobPage(_Body):
    jobs: list[JobView]
    next_cursor: str | None


class ExecutionPage(_Body):
    executions: list[ExecutionView]
    next_cursor: str | None


class ErrorBody(_Body):
    error: str


class ConflictBody(_Body):
    error: str
    status: ShownJobStatus


class FieldErrorItem(_Body):
    field: str
    message: str


class FieldErrorsBody(_Body):
    errors: list[FieldErrorItem]


class HealthBody(_Body):
    status: Literal["ok"] = "ok"


class ReadinessBody(_Body):
    ready: bool
    postgres: str
    kafka: str

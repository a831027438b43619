"""Commands on the submit topic ``jobs.commands`` (key = user_id, value = JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from schemas.v1.jobs import USER_ID_FIELD, Priority, RetryPolicy, SubmittedJob, UserId
from schemas.v1.schedules import CalendarName, Exclusions, Instant, Overlap, Schedule
from schemas.v1.targets import Target


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1


class CreateCommand(_Command):
    type: Literal["create"]
    job: SubmittedJob

    @property
    def user_id(self) -> str:
        return self.job.user_id


class CancelCommand(_Command):
    type: Literal["cancel"]
    user_id: UserId = USER_ID_FIELD
    job_id: UUID


class TriggerCommand(_Command):
    """Run a job once more, now, without moving its schedule (also how a dead letter is
    replayed: its record names the job)."""

    type: Literal["trigger"]
    user_id: UserId = USER_ID_FIELD
    job_id: UUID


class PauseCommand(_Command):
    """Stop firing a job until it is resumed; missed occurrences follow its catch-up policy."""

    type: Literal["pause"]
    user_id: UserId = USER_ID_FIELD
    job_id: UUID


class ResumeCommand(_Command):
    type: Literal["resume"]
    user_id: UserId = USER_ID_FIELD
    job_id: UUID


class JobChanges(BaseModel):
    """The parts of a job an update may replace; at least one must be given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    schedule: Schedule | None = None
    target: Target | None = None
    priority: Priority | None = None
    retry: RetryPolicy | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> JobChanges:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError(
                "an update must change at least one of: " + ", ".join(type(self).model_fields)
            )
        return self


class UpdateCommand(_Command):
    """Replace parts of a scheduled or paused job; a new schedule recomputes the next run."""

    type: Literal["update"]
    user_id: UserId = USER_ID_FIELD
    job_id: UUID
    changes: JobChanges


class BackfillRange(BaseModel):
    """The body of ``POST /v1/jobs/{id}/backfill``: run the job's occurrences in
    ``[from, to)``, oldest first, under ``overlap`` (the job's own policy when left out)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True
    )

    from_: Instant = Field(alias="from")
    to: Instant
    overlap: Overlap | None = None

    @field_validator("to")
    @classmethod
    def _after_from(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("from_")
        if start is not None and value <= start:
            raise ValueError("must be after from")
        return value


class BackfillCommand(BackfillRange):
    """Run a recurring job's past occurrences, each once (at most 1,000 per command)."""

    version: Literal[1] = 1
    type: Literal["backfill"]
    user_id: UserId = USER_ID_FIELD
    job_id: UUID


class DefineCalendarCommand(_Command):
    """Define a named calendar of the tenant, as ``POST /v1/calendars`` does: ``dates`` and
    ``cron`` rules that jobs exclude by naming it. A name the tenant has already is refused
    (a dead letter), unless the calendar stored under it is this one: a redelivered command
    is applied once."""

    type: Literal["define_calendar"]
    user_id: UserId = USER_ID_FIELD
    name: CalendarName
    calendar: Exclusions


class DeleteCalendarCommand(_Command):
    """Delete a named calendar of the tenant, as ``DELETE /v1/calendars/{name}`` does; the
    jobs that name it keep the copy of its rules they hold. Deleting a calendar that is not
    there (deleted already: a redelivery) changes nothing."""

    type: Literal["delete_calendar"]
    user_id: UserId = USER_ID_FIELD
    name: CalendarName


AnyCommand = (
    CreateCommand
    | CancelCommand
    | TriggerCommand
    | PauseCommand
    | ResumeCommand
    | UpdateCommand
    | BackfillCommand
    | DefineCalendarCommand
    | DeleteCalendarCommand
)
Command = Annotated[AnyCommand, Field(discriminator="type")]
COMMAND = TypeAdapter[AnyCommand](Command)


def integral_float(error: ErrorDetails) -> bool:
    """A strict-mode complaint about ``3.0`` for an integer, which JSON Schema allows."""
    value = error["input"]
    return error["type"] == "int_type" and isinstance(value, float) and value.is_integer()


def decode_command(raw: bytes | str) -> AnyCommand:
    """A ``jobs.commands`` record value as a command, exactly as the exported JSON Schema says.

    Strict JSON validation: a number must be a JSON number (not ``"30"``, not ``true``) and a
    date-time an RFC 3339 string (not a Unix timestamp); ``COMMAND.validate_json`` alone
    would coerce those. The one leniency is JSON Schema's own: ``3.0`` is an integer.
    Raises ``pydantic.ValidationError``.
    """
    try:
        return COMMAND.validate_json(raw, strict=True)
    except ValidationError as exc:
        if not all(integral_float(error) for error in exc.errors()):
            raise
    # Only integral floats were refused; every other field passed the strict validation.
    return COMMAND.validate_json(raw)

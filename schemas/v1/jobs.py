"""A job as a user submits it (HTTP body, and the ``job`` of a create command)."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.v1.schedules import Schedule
from schemas.v1.statuses import Lane
from schemas.v1.targets import Target

# A job's priority: the lane its executions run on.
Priority = Lane
UserId = str
USER_ID = r"^[A-Za-z0-9._:@-]+$"
USER_ID_FIELD = Field(min_length=1, max_length=128, pattern=USER_ID)


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=3, ge=1, le=100)
    initial_delay_s: float = Field(default=1.0, ge=0, le=86400)
    max_delay_s: float = Field(default=300.0, ge=0, le=7 * 86400)


class Concurrency(BaseModel):
    """At most ``limit`` executions of the tenant's jobs with this ``key`` run at once; the
    owning shard holds the others back ('pending', with the reason) until a slot frees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=128)
    limit: int = Field(ge=1, le=100_000)


class JobSubmission(BaseModel):
    """The body of ``POST /v1/jobs``: ``user_id`` may be left out, and then means the tenant
    of the request's credential (the API fills it in before anything else reads the job)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: UserId | None = Field(default=None, min_length=1, max_length=128, pattern=USER_ID)
    name: str = Field(min_length=1, max_length=200)
    schedule: Schedule
    target: Target
    priority: Priority = "normal"
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    concurrency: Concurrency | None = None

    def for_tenant(self, user_id: str) -> JobSpec:
        """This job, acting for ``user_id`` (its fields were validated already)."""
        return JobSpec.model_construct(**{**dict(self), "user_id": user_id})


class JobSpec(JobSubmission):
    """A job with its tenant: what a create command carries (over Kafka ``user_id`` is
    required, since no credential travels with the record)."""

    user_id: UserId = USER_ID_FIELD


class SubmittedJob(JobSpec):
    """A job inside a create command: the HTTP body, plus an optional caller-chosen id."""

    job_id: UUID | None = None

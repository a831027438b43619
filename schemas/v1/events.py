"""Events kjs emits: a due job for a worker lane, and a worker's result for its shard."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.v1.jobs import Priority
from schemas.v1.targets import Target


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1


class DueEvent(_Event):
    """Produced to ``jobs.due.<lane>`` (key = job_id) a short lead before ``scheduled_for``."""

    execution_id: UUID
    job_id: UUID
    user_id: str
    attempt: int = Field(ge=1)
    scheduled_for: AwareDatetime
    lane: Priority
    target: Target
    shard: int = Field(ge=0)
    # A retry must not start before its backoff ends; None means "at scheduled_for".
    not_before: AwareDatetime | None = None


ResultStatus = Literal["succeeded", "failed"]


class ResultEvent(_Event):
    """Produced to ``jobs.results`` (key = user_id) once per attempt."""

    execution_id: UUID
    job_id: UUID
    user_id: str
    attempt: int = Field(ge=1)
    status: ResultStatus
    started_at: AwareDatetime
    finished_at: AwareDatetime
    worker: str
    http_status: int | None = None
    output_excerpt: str | None = None
    error: str | None = None
    retryable: bool = False
    # The target asked to wait this long before trying again (HTTP Retry-After).
    retry_after_s: float | None = Field(default=None, ge=0)

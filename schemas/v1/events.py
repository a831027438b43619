"""Events kjs emits: a due job for a worker lane, and a worker's result for its shard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from core import tracing
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
    """One attempt's outcome, on ``jobs.results``: a record of its own (key = user_id), or
    one of the ``results`` of a ``ResultBatch``."""

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


# The header that marks a ``jobs.results`` record as a ``ResultBatch``; a record without it
# holds one ``ResultEvent`` (what workers before batching produced, and still valid).
KIND_HEADER = "kjs-kind"
RESULT_BATCH_KIND = b"result-batch"


class ResultBatch(_Event):
    """Produced to ``jobs.results`` on the partition its results' user_ids hash to (murmur2,
    as their keys would), with header ``kjs-kind: result-batch``: the results of several
    attempts in one record, so a burst's results cost the worker one produce and the shard
    one record per batch instead of one per attempt."""

    results: list[ResultEvent] = Field(min_length=1)
    # The trace context (W3C traceparent) of each result that has one, by execution id: a
    # single result's rides in its record's header, which a batch's results cannot share.
    traceparents: dict[UUID, str] = Field(default_factory=dict)


def read_result_record(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> ResultBatch:
    """What a ``jobs.results`` record holds, as a batch: a record of one result is a batch of
    one, with its header's trace context. ``ValidationError`` if it holds no result."""
    if (KIND_HEADER, RESULT_BATCH_KIND) in headers:
        batch = ResultBatch.model_validate_json(value or b"")
        # As a header's: a malformed trace context is dropped, never a refused result.
        traces = {i: n for i, t in batch.traceparents.items() if (n := tracing.normalized(t))}
        return batch.model_copy(update={"traceparents": traces})
    result = ResultEvent.model_validate_json(value or b"")
    traceparent = tracing.from_headers(headers)
    traces = {} if traceparent is None else {result.execution_id: traceparent}
    return ResultBatch(results=[result], traceparents=traces)


def results_in(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> list[ResultEvent]:
    """The results a ``jobs.results`` record holds; ``ValidationError`` if it holds none."""
    return read_result_record(value, headers).results

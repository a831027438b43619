"""What every target runner receives and returns, whatever the target type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID


@dataclass(frozen=True)
class Outcome:
    """One attempt's result as the runner saw it; the worker adds times and identity."""

    succeeded: bool
    http_status: int | None = None
    output_excerpt: str | None = None
    error: str | None = None
    # Whether the scheduler should try again: transient failures (timeouts, 5xx, 429) only.
    retryable: bool = False
    # The target asked for this pause before the next attempt (HTTP Retry-After).
    retry_after_s: float | None = None

    @classmethod
    def failure(
        cls,
        error: str,
        *,
        retryable: bool,
        http_status: int | None = None,
        output_excerpt: str | None = None,
    ) -> Outcome:
        return cls(
            succeeded=False,
            error=error,
            retryable=retryable,
            http_status=http_status,
            output_excerpt=output_excerpt,
        )


@dataclass(frozen=True)
class Attempt:
    """The identity of the attempt a runner executes; the execution id is the idempotency
    key every target receives, so a target can absorb a duplicate it is sent."""

    execution_id: UUID
    job_id: UUID
    user_id: str
    attempt: int
    # The W3C traceparent an HTTP target gets (the run span's; docs/tracing.md), if any.
    traceparent: str | None = None


class TargetRunner(Protocol):
    """Runs one target. Must not raise for failures of the target itself: those are an
    ``Outcome`` with ``succeeded=False``; an exception is treated as a worker bug."""

    async def __call__(self, target: Any, attempt: Attempt) -> Outcome: ...


IDEMPOTENCY_HEADER = "Idempotency-Key"


def with_idempotency_key(headers: dict[str, str], attempt: Attempt) -> dict[str, str]:
    """The job's headers plus the execution id as ``Idempotency-Key``.

    Ours replaces a job's own (in any letter case): the key must be the same for every
    delivery of an execution, which only the execution id guarantees.
    """
    kept = {k: v for k, v in headers.items() if k.lower() != IDEMPOTENCY_HEADER.lower()}
    return {**kept, IDEMPOTENCY_HEADER: str(attempt.execution_id)}

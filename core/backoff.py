"""Every backoff of kjs, in one place.

1. Retries of a failed attempt (``retry_delay``): exponential with full jitter, capped. The
   delay for attempt n+1 is uniform in [0, min(max_delay, initial * 2**(n-1))] ("full
   jitter": retries of many jobs failing together spread out instead of hammering the target
   in waves). A target's ``Retry-After`` is a floor, itself capped by ``max_delay_s``.
2. Waiting out an outage of Postgres or the broker (``Backoff``): capped exponential, no
   jitter; it starts small (a blip costs little lateness) and is capped (a long outage is
   noticed within ``max_s`` of its end).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID


class RetryLimits(Protocol):
    """A job's retry policy (``schemas.v1.jobs.RetryPolicy``), as the backoff reads it."""

    @property
    def max_attempts(self) -> int: ...
    @property
    def initial_delay_s(self) -> float: ...
    @property
    def max_delay_s(self) -> float: ...


def backoff_cap(policy: RetryLimits, failed_attempt: int) -> float:
    exponent = min(failed_attempt - 1, 60)  # 2**60 s is already far beyond any cap
    return float(min(policy.max_delay_s, policy.initial_delay_s * 2**exponent))


def retry_delay(
    policy: RetryLimits,
    failed_attempt: int,
    retry_after_s: float | None,
    execution_id: UUID,
) -> float | None:
    """Seconds until the next attempt, or ``None`` when the attempts are used up.

    The jitter is seeded by the failed execution's id, so a redelivered result would pick
    the same delay.
    """
    if failed_attempt >= policy.max_attempts:
        return None
    delay = random.Random(execution_id.int).uniform(0.0, backoff_cap(policy, failed_attempt))
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, policy.max_delay_s))
    return delay


@dataclass(frozen=True)
class Backoff:
    """Delays while a dependency is down: ``initial_s`` doubling per failure, up to ``max_s``."""

    initial_s: float = 0.05
    max_s: float = 5.0

    def delay(self, failures: int) -> float:
        return float(min(self.max_s, self.initial_s * 2 ** max(0, failures - 1)))


DEFAULT_BACKOFF = Backoff()
# The scheduler's waits for Postgres or Kafka (scheduler.outages.until_available).
OUTAGE_BACKOFF = Backoff(initial_s=0.1, max_s=5.0)

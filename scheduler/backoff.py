"""When a failed attempt runs again: exponential backoff with full jitter, capped.

The delay for attempt n+1 is uniform in [0, min(max_delay, initial * 2**(n-1))] ("full
jitter": retries of many jobs failing together spread out instead of hammering the target in
waves). A target's ``Retry-After`` is a floor, itself capped by ``max_delay_s``.
"""

from __future__ import annotations

import random
from uuid import UUID

from schemas.v1.jobs import RetryPolicy


def backoff_cap(policy: RetryPolicy, failed_attempt: int) -> float:
    exponent = min(failed_attempt - 1, 60)  # 2**60 s is already far beyond any cap
    return float(min(policy.max_delay_s, policy.initial_delay_s * 2**exponent))


def retry_delay(
    policy: RetryPolicy,
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

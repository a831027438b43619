from __future__ import annotations

from uuid import uuid4

import pytest

from core.backoff import backoff_cap, retry_delay
from schemas.v1.jobs import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, initial_delay_s=1, max_delay_s=10)


def test_cap_grows_exponentially_then_saturates() -> None:
    assert [backoff_cap(POLICY, n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_full_jitter_stays_within_the_cap(attempt: int) -> None:
    delays = [retry_delay(POLICY, attempt, None, uuid4()) for _ in range(200)]
    assert all(d is not None and 0 <= d <= backoff_cap(POLICY, attempt) for d in delays)
    # Full jitter spreads retries over the whole range, not at its top.
    assert min(d for d in delays if d is not None) < backoff_cap(POLICY, attempt) / 4


def test_out_of_attempts_means_no_retry() -> None:
    assert retry_delay(POLICY, 5, None, uuid4()) is None
    assert retry_delay(RetryPolicy(max_attempts=1), 1, None, uuid4()) is None


def test_retry_after_is_a_floor_capped_by_max_delay() -> None:
    assert retry_delay(POLICY, 1, 7.5, uuid4()) == 7.5
    assert retry_delay(POLICY, 1, 3600, uuid4()) == 10


def test_jitter_is_reproducible_per_execution() -> None:
    eid = uuid4()
    assert retry_delay(POLICY, 3, None, eid) == retry_delay(POLICY, 3, None, eid)

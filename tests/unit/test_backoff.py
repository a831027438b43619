from __future__ import annotations

from uuid import UUID, uuid4

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


# --- over many attempts: the bounds of full jitter, computed here, not by backoff_cap --------

WIDE = RetryPolicy(max_attempts=100, initial_delay_s=0.5, max_delay_s=60)
EXECUTIONS = [UUID(int=n) for n in range(1, 301)]  # fixed ids: the same draws every run


def upper_bound(policy: RetryPolicy, failed_attempt: int) -> float:
    """Full jitter: uniform in [0, min(max_delay, initial * 2**(attempt - 1))]."""
    return min(policy.max_delay_s, policy.initial_delay_s * 2.0 ** (failed_attempt - 1))


def delays_after(
    policy: RetryPolicy, failed_attempt: int, retry_after: float | None
) -> list[float]:
    delays = [retry_delay(policy, failed_attempt, retry_after, eid) for eid in EXECUTIONS]
    assert all(d is not None for d in delays), f"attempt {failed_attempt} has attempts left"
    return [d for d in delays if d is not None]


@pytest.mark.parametrize("failed_attempt", range(1, 100))
def test_every_delay_is_within_the_full_jitter_bounds(failed_attempt: int) -> None:
    delays = delays_after(WIDE, failed_attempt, None)
    bound = upper_bound(WIDE, failed_attempt)
    assert all(0 <= d <= bound for d in delays), (min(delays), max(delays), bound)
    # Spread over the whole range: neither a constant, nor bunched at either end.
    assert min(delays) < bound / 10 and max(delays) > bound * 0.9, (min(delays), max(delays))


def test_the_upper_bound_doubles_until_max_delay_then_stays() -> None:
    """The largest delay drawn after attempt n + 1 exceeds every delay allowed after attempt
    n, as long as the bound doubles (a constant or non-growing backoff fails here)."""
    growing = [n for n in range(1, 100) if upper_bound(WIDE, n + 1) > upper_bound(WIDE, n)]
    assert growing == list(range(1, 8)), growing  # 0.5, 1, 2, ... 32, then the 60 s cap
    for n in growing:
        assert max(delays_after(WIDE, n + 1, None)) > upper_bound(WIDE, n), n
    saturated = [max(delays_after(WIDE, n, None)) for n in (9, 30, 99)]
    assert all(WIDE.max_delay_s * 0.9 < d <= WIDE.max_delay_s for d in saturated), saturated


@pytest.mark.parametrize("failed_attempt", [1, 2, 5, 8, 50])
@pytest.mark.parametrize("retry_after", [0.0, 0.7, 3.0, 45.0, 600.0])
def test_a_delay_is_never_shorter_than_retry_after_capped_by_max_delay(
    failed_attempt: int, retry_after: float
) -> None:
    floor = min(retry_after, WIDE.max_delay_s)
    bound = max(floor, upper_bound(WIDE, failed_attempt))
    delays = delays_after(WIDE, failed_attempt, retry_after)
    assert all(floor <= d <= bound for d in delays), (min(delays), max(delays), floor, bound)
    # The floor only raises what is below it: the jittered draws above it are kept.
    assert delays == [max(floor, d) for d in delays_after(WIDE, failed_attempt, None)]

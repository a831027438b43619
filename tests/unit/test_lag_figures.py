"""Offset lag, time lag, rates and the workers-needed hint (lag/figures.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lag.figures import (
    consumed_per_s,
    offset_lag,
    produced_per_s,
    read_position,
    time_lag_s,
    workers_needed,
)
from lag.status import Sample


def test_offset_lag_is_end_minus_committed() -> None:
    assert offset_lag(committed=7, start=0, end=10) == 3


def test_offset_lag_without_commit_counts_from_the_log_start_not_zero() -> None:
    assert offset_lag(committed=None, start=4, end=10) == 6


def test_offset_lag_is_never_negative() -> None:
    """A committed offset past the high watermark (a truncated log, a bad manual reset)."""
    assert offset_lag(committed=15, start=0, end=10) == 0


def test_offset_lag_below_the_log_start_counts_from_the_committed_offset() -> None:
    """As Kafka's own tool does, so that both agree."""
    assert offset_lag(committed=2, start=5, end=10) == 8


@given(
    st.one_of(st.none(), st.integers(0, 10**6)),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
def test_offset_lag_is_never_negative_property(committed: int | None, a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    lag = offset_lag(committed, start, end)
    assert lag >= 0
    if committed is None:
        assert lag == end - start


def test_read_position() -> None:
    assert read_position(None, 3) == 3
    assert read_position(7, 3) == 7
    assert read_position(1, 3) == 3  # the next record the group can still read


def test_time_lag_is_now_minus_the_records_time() -> None:
    assert time_lag_s(now=1000.0, lag=5, record_ts=900.0) == 100.0


def test_time_lag_is_zero_when_caught_up() -> None:
    assert time_lag_s(now=1000.0, lag=0, record_ts=None) == 0.0


def test_time_lag_is_unknown_without_the_record_not_guessed() -> None:
    assert time_lag_s(now=1000.0, lag=5, record_ts=None) is None


def test_time_lag_is_clamped_for_a_clock_running_ahead() -> None:
    assert time_lag_s(now=1000.0, lag=5, record_ts=1002.0) == 0.0


def sample(at: float, committed: int | None, end: int, error: str | None = None) -> Sample:
    return Sample(at=at, committed=committed, end=end, lag=end - (committed or 0), error=error)


def test_rates_between_the_oldest_and_newest_readable_sample() -> None:
    samples = [sample(0, 10, 20), sample(5, 30, 50), Sample.failed(9, "x"), sample(10, 60, 70)]
    assert consumed_per_s(samples) == 5.0
    assert produced_per_s(samples) == 5.0


def test_rates_need_two_samples_apart_in_time() -> None:
    assert consumed_per_s([sample(0, 1, 2)]) is None
    assert produced_per_s([sample(0, 1, 2), sample(0, 2, 3)]) is None


def test_consumed_rate_skips_samples_without_a_commit() -> None:
    samples = [sample(0, None, 10), sample(2, 4, 10), sample(4, 8, 10)]
    assert consumed_per_s(samples) == 2.0
    assert produced_per_s(samples) == 0.0


def test_a_rewind_is_no_negative_rate() -> None:
    assert consumed_per_s([sample(0, 50, 60), sample(10, 20, 60)]) == 0.0


def test_workers_needed_drain_plus_arrivals_over_rate_per_member() -> None:
    # 2 members consume 10/s together: 5/s each. Lag 600 in 60 s is 10/s, plus 5/s arriving.
    assert workers_needed(600, 10.0, 5.0, members=2, partitions=6, target_s=60) == 3


def test_workers_needed_is_capped_at_the_partitions() -> None:
    assert workers_needed(10**6, 1.0, 0.0, members=1, partitions=6, target_s=60) == 6


def test_workers_needed_for_arrivals_only() -> None:
    # No lag, 0.5/s arriving; 4 members consumed 2/s together in the window: 0.5/s each.
    assert workers_needed(0, 2.0, 0.5, members=4, partitions=6, target_s=60) == 1
    # 0.25/s each: two are needed to keep up.
    assert workers_needed(0, 1.0, 0.5, members=4, partitions=6, target_s=60) == 2


def test_workers_needed_is_zero_with_nothing_to_do() -> None:
    assert workers_needed(0, 0.0, 0.0, members=3, partitions=6, target_s=60) == 0


def test_workers_needed_without_members_but_lag_is_one() -> None:
    assert workers_needed(50, None, None, members=0, partitions=6, target_s=60) == 1


def test_workers_needed_unknown_when_members_consume_nothing() -> None:
    """A stuck group: more members would not help; STALL or STOP tells why."""
    assert workers_needed(50, 0.0, 0.0, members=2, partitions=6, target_s=60) is None


def test_workers_needed_unknown_before_two_samples() -> None:
    assert workers_needed(50, None, None, members=2, partitions=6, target_s=60) is None


def test_workers_needed_refuses_a_zero_target() -> None:
    with pytest.raises(ValueError):
        workers_needed(1, 1.0, 1.0, members=1, partitions=1, target_s=0)

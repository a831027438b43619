"""The Burrow-like status rules (lag/status.py): samples in, status out."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lag.status import (
    SEVERITY,
    Sample,
    Status,
    Thresholds,
    Verdict,
    Window,
    advance,
    group_status,
    partition_status,
)

TH = Thresholds(window=10, min_samples=3, stop_after_s=120.0)


def s(
    at: float,
    committed: int | None,
    lag: int,
    *,
    time_lag: float | None = 1.0,
    members: int | None = 1,
    end: int | None = None,
) -> Sample:
    if end is None:
        end = (committed or 0) + lag
    return Sample(
        at=at,
        committed=committed,
        end=end,
        lag=lag,
        time_lag_s=0.0 if lag == 0 else time_lag,
        members=members,
    )


def window(samples: Sequence[Sample], th: Thresholds = TH) -> Window:
    w = Window()
    for sample in samples:
        w = advance(w, sample, th)
    return w


def status(samples: Sequence[Sample], th: Thresholds = TH) -> Verdict:
    return partition_status(window(samples, th), th)


# --- ERR ---------------------------------------------------------------------------------


def test_no_sample_is_err() -> None:
    assert partition_status(Window(), TH).status is Status.ERR


def test_unreadable_latest_sample_is_err_with_the_error() -> None:
    verdict = status([s(0, 5, 0), Sample.failed(1, "UNKNOWN_TOPIC_OR_PART")])
    assert verdict.status is Status.ERR
    assert "UNKNOWN_TOPIC_OR_PART" in verdict.reason


def test_an_earlier_error_does_not_hide_a_readable_latest_sample() -> None:
    assert status([Sample.failed(0, "timeout"), s(1, 5, 0)]).status is Status.OK


# --- OK ----------------------------------------------------------------------------------


def test_caught_up_is_ok_however_long_the_offset_is_unchanged() -> None:
    """A quiet topic: nothing to consume, nothing committed for an hour. No false alarm."""
    samples = [s(t, 42, 0, members=0) for t in range(0, 3600, 60)]
    verdict = status(samples)
    assert verdict == Verdict(Status.OK, "caught up")


def test_too_few_samples_for_growth_rules_is_ok_and_says_so() -> None:
    verdict = status([s(0, 5, 3), s(1, 5, 4)])
    assert verdict.status is Status.OK
    assert "2 of 3 samples" in verdict.reason


def test_shrinking_lag_while_committing_is_ok() -> None:
    assert status([s(0, 0, 9), s(1, 4, 6), s(2, 8, 2)]).status is Status.OK


def test_steady_lag_while_committing_is_ok() -> None:
    """Consuming as fast as records arrive, with a constant backlog: not falling behind."""
    assert status([s(0, 0, 5), s(1, 10, 5), s(2, 20, 5)]).status is Status.OK


# --- WARN --------------------------------------------------------------------------------


def test_growing_lag_while_committing_is_warn() -> None:
    verdict = status([s(0, 0, 3), s(1, 2, 5), s(2, 4, 9)])
    assert verdict.status is Status.WARN
    assert "3 to 9" in verdict.reason


def test_lag_flat_then_growing_is_warn() -> None:
    assert status([s(0, 0, 3), s(1, 2, 3), s(2, 4, 5)]).status is Status.WARN


def test_lag_that_dipped_in_the_window_is_not_warn() -> None:
    assert status([s(0, 0, 3), s(1, 2, 5), s(2, 6, 4), s(3, 7, 6)]).status is Status.OK


def test_zero_lag_anywhere_in_the_window_prevents_warn() -> None:
    """Burrow's rule 1: a burst drained once in the window is not a trend."""
    assert status([s(0, 0, 0), s(1, 2, 5), s(2, 4, 9)]).status is Status.OK


def test_growth_only_within_the_window_counts() -> None:
    th = Thresholds(window=3, min_samples=3)
    old_growth = [s(0, 0, 1), s(1, 1, 5)]
    recent_shrink = [s(2, 10, 9), s(3, 15, 8), s(4, 20, 7)]
    assert status([*old_growth, *recent_shrink], th).status is Status.OK


# --- STALL -------------------------------------------------------------------------------


def test_unchanged_committed_offset_with_lag_is_stall() -> None:
    verdict = status([s(0, 7, 2), s(1, 7, 3), s(2, 7, 3)])
    assert verdict.status is Status.STALL
    assert "offset 7 unchanged over 3 samples" in verdict.reason


def test_stall_needs_min_samples() -> None:
    assert status([s(0, 7, 2), s(1, 7, 3)]).status is Status.OK


def test_stall_not_when_the_lag_was_zero_in_the_window() -> None:
    """A record arrived on a quiet partition a moment ago: not a stall yet."""
    assert status([s(0, 7, 0), s(1, 7, 0), s(2, 7, 1), s(3, 7, 1)]).status is Status.OK


def test_never_committed_with_lag_and_members_is_stall() -> None:
    verdict = status([s(0, None, 4), s(1, None, 4), s(2, None, 4)])
    assert verdict.status is Status.STALL
    assert "no committed offset" in verdict.reason


# --- STOP --------------------------------------------------------------------------------


def test_no_members_and_an_old_waiting_record_is_stop_from_one_sample() -> None:
    verdict = status([s(0, 3, 7, time_lag=600.0, members=0)])
    assert verdict.status is Status.STOP
    assert "no members" in verdict.reason
    assert "600s > 120s" in verdict.reason


def test_never_committed_no_members_old_records_is_stop() -> None:
    verdict = status([s(0, None, 5, time_lag=3600.0, members=0)])
    assert verdict.status is Status.STOP
    assert "no committed offset" in verdict.reason


def test_no_members_but_fresh_records_is_not_stop() -> None:
    """A rolling restart empties the group for a moment; the records waited only 5 s."""
    samples = [s(t, 3, 7, time_lag=5.0 + t, members=0) for t in range(3)]
    assert status(samples).status is Status.STALL


def test_unknown_members_from_one_sample_is_not_stop() -> None:
    assert status([s(0, 3, 7, time_lag=600.0, members=None)]).status is Status.OK


def test_observed_unchanged_longer_than_the_threshold_is_stop() -> None:
    """Members exist but commit nothing: STOP once the monitor has seen it for 120 s, even
    though the window (3 samples) spans less than that."""
    th = Thresholds(window=3, min_samples=3, stop_after_s=120.0)
    samples = [s(t, 10, 5, time_lag=1000.0 + t) for t in range(0, 200, 20)]
    w = window(samples, th)
    assert w.samples[0].at == 140 and w.unchanged_since == 0
    verdict = partition_status(w, th)
    assert verdict.status is Status.STOP
    assert "offset 10 unchanged for 180s" in verdict.reason


def test_observed_unchanged_is_bounded_by_the_waiting_records_age() -> None:
    """Caught up for a long time, then a record arrived 30 s ago: lag has existed 30 s only."""
    th = Thresholds(window=3, min_samples=3, stop_after_s=120.0)
    quiet = [s(t, 10, 0) for t in range(0, 300, 30)]
    arrived = [s(t, 10, 1, time_lag=t - 300.0) for t in range(300, 340, 10)]
    verdict = partition_status(window([*quiet, *arrived], th), th)
    assert verdict.status is Status.STALL
    assert "unchanged over 3 samples" in verdict.reason


def test_unreadable_record_time_falls_back_to_the_observed_time() -> None:
    samples = [s(t, 10, 5, time_lag=None) for t in range(0, 200, 20)]
    assert status(samples).status is Status.STOP


def test_catching_up_on_an_old_backlog_is_not_stop() -> None:
    """Records an hour old, but the group commits on every sample."""
    samples = [s(t, 100 * t, 5000 - 50 * t, time_lag=3600.0) for t in range(0, 300, 30)]
    assert status(samples).status is Status.OK


def test_a_pause_between_commits_on_an_old_backlog_is_not_stop() -> None:
    """The offset was committed a moment ago (seen moving), so the records' age alone, an hour,
    does not prove a stop."""
    samples = [
        s(0, 100, 900, time_lag=3600.0),
        s(1, 200, 800, time_lag=3600.0),
        s(2, 200, 800, time_lag=3600.0),
        s(3, 200, 800, time_lag=3600.0),
    ]
    assert status(samples).status is Status.OK
    th = Thresholds(window=3, min_samples=3)
    assert status(samples, th).status is Status.STALL


def test_stop_wins_over_stall() -> None:
    samples = [s(t, 3, 7, time_lag=600.0 + t, members=0) for t in range(5)]
    assert status(samples).status is Status.STOP


# --- REWIND ------------------------------------------------------------------------------


def test_committed_offset_moving_back_is_rewind() -> None:
    verdict = status([s(0, 10, 2), s(1, 12, 0), s(2, 4, 8)])
    assert verdict.status is Status.REWIND
    assert "from 12 to 4" in verdict.reason


def test_rewind_is_reported_even_when_caught_up_again() -> None:
    assert status([s(0, 10, 0), s(1, 2, 0)]).status is Status.REWIND


def test_deleted_committed_offset_is_rewind() -> None:
    verdict = status([s(0, 10, 2), s(1, None, 12)])
    assert verdict.status is Status.REWIND
    assert "deleted" in verdict.reason


def test_first_commit_is_not_rewind() -> None:
    assert status([s(0, None, 5), s(1, 5, 0)]).status is Status.OK


def test_rewind_leaves_the_window_with_its_samples() -> None:
    th = Thresholds(window=3, min_samples=3)
    samples = [s(0, 10, 0), s(1, 2, 0), s(2, 4, 0), s(3, 6, 0)]
    assert status(samples, th).status is Status.OK


def test_an_error_between_samples_does_not_hide_a_rewind() -> None:
    samples = [s(0, 10, 0), Sample.failed(1, "timeout"), s(2, 3, 7)]
    assert status(samples).status is Status.REWIND


# --- the window --------------------------------------------------------------------------


def test_window_keeps_the_last_n_samples() -> None:
    th = Thresholds(window=4, min_samples=2)
    w = window([s(t, t, 1) for t in range(10)], th)
    assert [x.at for x in w.samples] == [6, 7, 8, 9]


def test_unchanged_since_resets_on_a_change_and_survives_errors() -> None:
    w = window([s(0, 1, 1), s(5, 2, 1), s(9, 2, 1)])
    assert w.unchanged_since == 5
    w = advance(w, Sample.failed(12, "timeout"), TH)
    assert w.unchanged_since == 5
    w = advance(w, s(15, 3, 1), TH)
    assert w.unchanged_since == 15


@pytest.mark.parametrize(
    "kwargs",
    [{"window": 0}, {"min_samples": 0}, {"window": 3, "min_samples": 4}, {"stop_after_s": 0}],
)
def test_thresholds_refuse_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Thresholds(**kwargs)  # type: ignore[arg-type]


# --- groups ------------------------------------------------------------------------------


def test_group_with_no_partitions_is_err() -> None:
    assert group_status([]).status is Status.ERR


def test_group_status_is_the_most_severe_partition() -> None:
    verdicts = [
        Verdict(Status.OK, "caught up"),
        Verdict(Status.WARN, "lag grew"),
        Verdict(Status.STOP, "offset 3 unchanged"),
        Verdict(Status.STOP, "no members"),
        Verdict(Status.REWIND, "moved back"),
    ]
    verdict = group_status(verdicts)
    assert verdict.status is Status.STOP
    assert verdict.reason == "STOP on 2 of 5 partitions (offset 3 unchanged)"


def test_group_all_ok() -> None:
    assert group_status([Verdict(Status.OK, "caught up")] * 3) == Verdict(
        Status.OK, "all 3 partitions OK"
    )


def test_severity_orders_every_status_once() -> None:
    assert sorted(SEVERITY) == sorted(Status)
    assert SEVERITY[0] is Status.OK and SEVERITY[-1] is Status.ERR


# --- properties --------------------------------------------------------------------------

lags = st.integers(min_value=0, max_value=50)
offsets = st.integers(min_value=0, max_value=50)


@given(st.lists(st.tuples(offsets, lags), min_size=1, max_size=15))
def test_caught_up_without_a_rewind_is_always_ok(points: list[tuple[int, int]]) -> None:
    committed = sorted(c for c, _ in points)  # never moves back
    samples = [s(i, c, lag) for i, (c, (_, lag)) in enumerate(zip(committed, points, strict=True))]
    samples[-1] = s(len(samples), committed[-1], 0)
    assert status(samples).status is Status.OK


@given(st.lists(offsets, min_size=2, max_size=10))
def test_rewind_iff_a_committed_offset_moves_back(committed: list[int]) -> None:
    samples = [s(i, c, 1, time_lag=1.0) for i, c in enumerate(committed)]
    moved_back = any(b < a for a, b in pairwise(committed))
    assert (status(samples).status is Status.REWIND) == moved_back

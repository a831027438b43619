from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from schemas.v1.schedules import CronSchedule, DstPolicy, IntervalSchedule, OnceSchedule
from timetable.occurrences import (
    exhausted,
    first_run,
    fold_policy,
    jitter_delay,
    last_run,
    next_run,
    occurrences,
)

T0 = datetime(2026, 3, 10, 12, 0, 7, 250_000, tzinfo=UTC)


def cron(expr: str, tz: str = "UTC") -> CronSchedule:
    return CronSchedule(type="cron", expression=expr, timezone=tz)


def test_once_returns_its_time_then_nothing() -> None:
    sched = OnceSchedule(type="once", at=T0)
    assert first_run(sched, T0 + timedelta(seconds=5), anchor=T0) == T0
    assert next_run(sched, after=T0, anchor=T0) is None


def test_interval_is_anchored_and_does_not_drift() -> None:
    sched = IntervalSchedule(type="interval", every_seconds=30)
    late = T0 + timedelta(seconds=47)  # a late fire must not shift later occurrences
    assert next_run(sched, after=late, anchor=T0) == T0 + timedelta(seconds=60)
    assert next_run(sched, after=T0, anchor=T0) == T0 + timedelta(seconds=30)


def test_five_field_cron_in_a_zone() -> None:
    # 03:00 in Berlin is 02:00 UTC in winter (CET, +01:00).
    nxt = next_run(cron("0 3 * * *", "Europe/Berlin"), after=T0, anchor=T0)
    assert nxt == datetime(2026, 3, 11, 2, 0, tzinfo=UTC)


def test_six_field_cron_has_seconds_first() -> None:
    nxt = next_run(cron("*/5 * * * * *"), after=T0, anchor=T0)
    assert nxt == datetime(2026, 3, 10, 12, 0, 10, tzinfo=UTC)


def test_half_hour_offset_zone() -> None:
    # Asia/Kolkata is +05:30: local midnight is 18:30 UTC the day before.
    nxt = next_run(cron("0 0 * * *", "Asia/Kolkata"), after=T0, anchor=T0)
    assert nxt == datetime(2026, 3, 10, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize("expr", ["* * * *", "61 * * * *", "0 61 * * * *", "* * * * * * *"])
def test_invalid_cron_is_refused(expr: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        cron(expr)


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        cron("* * * * *", "Mars/Olympus_Mons")


# --- bounds, intervals, max_runs, jitter ----------------------------------------------------

START = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def test_cron_start_at_is_inclusive_and_end_at_ends_the_schedule() -> None:
    sched = CronSchedule(
        type="cron",
        expression="0 * * * *",
        start_at=START,
        end_at=START + timedelta(hours=2),
    )
    assert first_run(sched, now=T0, anchor=T0) == START  # nothing before start_at
    assert occurrences(sched, after=T0, anchor=T0, limit=10) == [
        START,
        START + timedelta(hours=1),
        START + timedelta(hours=2),  # end_at itself is still a run
    ]
    assert next_run(sched, after=START + timedelta(hours=2), anchor=T0) is None


def test_interval_is_anchored_at_start_at_which_is_a_run() -> None:
    sched = IntervalSchedule(type="interval", every_seconds=90, start_at=START)
    assert first_run(sched, now=T0, anchor=T0) == START
    late = START + timedelta(seconds=100)  # a fire 10 s late does not drift the next
    assert next_run(sched, after=late, anchor=T0) == START + timedelta(seconds=180)


def test_interval_keeps_microsecond_precision_over_many_runs() -> None:
    sched = IntervalSchedule(type="interval", every_seconds=0.1)
    after = T0 + timedelta(days=100, microseconds=1)
    # 100 days of 0.1 s = 86.4 M runs, exactly on the grid (floats would have drifted).
    assert next_run(sched, after=after, anchor=T0) == T0 + timedelta(days=100, seconds=0.1)


def test_interval_end_at_and_until() -> None:
    sched = IntervalSchedule(type="interval", every_seconds=60, end_at=T0 + timedelta(minutes=3))
    assert occurrences(sched, T0, T0, limit=10) == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    until = T0 + timedelta(minutes=2, seconds=30)
    assert occurrences(sched, T0, T0, limit=10, until=until) == [
        T0 + timedelta(minutes=m) for m in (1, 2)
    ]
    assert occurrences(sched, T0, T0, limit=0) == []


def test_last_run_of_each_kind() -> None:
    every = IntervalSchedule(type="interval", every_seconds=30)
    assert last_run(every, T0 + timedelta(seconds=75), anchor=T0) == T0 + timedelta(seconds=60)
    assert last_run(every, T0 + timedelta(seconds=29), anchor=T0) is None  # the anchor isn't
    minutely = cron("* * * * *")
    assert last_run(minutely, T0, anchor=T0) == T0.replace(second=0, microsecond=0)
    assert last_run(minutely, T0, anchor=T0, after=T0 - timedelta(seconds=1)) is None
    once = OnceSchedule(type="once", at=T0)
    assert last_run(once, T0, anchor=T0) == T0
    assert last_run(once, T0 - timedelta(microseconds=1), anchor=T0) is None
    bounded = CronSchedule(type="cron", expression="* * * * *", start_at=T0)
    assert last_run(bounded, T0 + timedelta(seconds=30), anchor=T0) is None


def test_last_run_of_an_every_second_cron_after_a_long_outage_is_one_step() -> None:
    sched = cron("* * * * * *", "Europe/Berlin")
    until = T0 + timedelta(days=30)
    assert last_run(sched, until, anchor=T0) == until.replace(microsecond=0)


def test_exhausted() -> None:
    assert exhausted(OnceSchedule(type="once", at=T0), 1)
    assert not exhausted(OnceSchedule(type="once", at=T0), 0)
    assert not exhausted(cron("* * * * *"), 10**9)
    capped = CronSchedule(type="cron", expression="* * * * *", max_runs=3)
    assert [exhausted(capped, n) for n in (2, 3, 4)] == [False, True, True]


JOB = UUID("5f1e5b4e-7c1a-4c6e-9d2f-0b9f7c7a1e11")


def test_jitter_is_deterministic_per_job_and_occurrence_and_bounded() -> None:
    sched = CronSchedule(type="cron", expression="* * * * *", jitter_s=30)
    berlin = T0.astimezone(ZoneInfo("Europe/Berlin"))
    assert jitter_delay(sched, JOB, T0) == jitter_delay(sched, JOB, berlin)  # same instant
    delays = [jitter_delay(sched, JOB, T0 + timedelta(minutes=m)) for m in range(2000)]
    assert all(timedelta(0) <= d < timedelta(seconds=30) for d in delays)
    mean = sum(d.total_seconds() for d in delays) / len(delays)
    assert 13 < mean < 17  # uniform over [0, 30): about 15
    assert len(set(delays)) > 1900
    other = UUID(int=JOB.int ^ 1)
    assert jitter_delay(sched, other, T0) != jitter_delay(sched, JOB, T0)


@pytest.mark.parametrize("jitter_s", [0.0, 1e-7, 0.3, 2.5e-6])
def test_jitter_stays_below_its_bound(jitter_s: float) -> None:
    sched = IntervalSchedule(type="interval", every_seconds=60, jitter_s=jitter_s)
    for m in range(300):
        delay = jitter_delay(sched, JOB, T0 + timedelta(minutes=m))
        assert delay.total_seconds() < jitter_s or delay == timedelta(0)
    assert jitter_delay(OnceSchedule(type="once", at=T0), JOB, T0) == timedelta(0)


# --- the default fold policy, and what the contract refuses ----------------------------------


@pytest.mark.parametrize(
    ("expr", "policy"),
    [
        ("0 * * * *", "both"),
        ("*/5 * * * *", "both"),
        ("0 */1 * * *", "both"),  # croniter normalises */1 and 0-23 to *
        ("0 0-23 * * *", "both"),
        ("*/10 * * * * *", "both"),
        ("0 */2 * * *", "first"),
        ("30 2 * * *", "first"),
        ("0 30 2 * * *", "first"),
    ],
)
def test_default_fold_policy(expr: str, policy: str) -> None:
    assert fold_policy(cron(expr)) == policy


def test_explicit_fold_policy_wins() -> None:
    sched = CronSchedule(type="cron", expression="0 * * * *", dst=DstPolicy(fold="first"))
    assert fold_policy(sched) == "first"


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("R * * * *", "random"),  # croniter picks a new minute each time it parses
        ("0 R(1-5) * * *", "random"),
        ("0 0 30 2 *", "matches no date"),
        ("0 0 31 4 *", "matches no date"),
    ],
)
def test_nondeterministic_or_impossible_crons_are_refused(expr: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        cron(expr)


def test_month_and_day_names_are_not_random_fields() -> None:
    assert cron("0 0 * MAR,APR THU,FRI").expression


def test_interval_below_a_millisecond_is_refused() -> None:
    with pytest.raises(ValueError, match="every_seconds"):
        IntervalSchedule(type="interval", every_seconds=0.0001)


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Pacific/Kiritimati"])
@pytest.mark.parametrize(
    "at", [datetime(9999, 12, 31, 23, tzinfo=UTC), datetime(1, 1, 1, 1, tzinfo=UTC)]
)
def test_the_ends_of_datetimes_range_mean_no_run_not_a_crash(tz: str, at: datetime) -> None:
    """Beyond datetime's range there is nothing to run: None, not an OverflowError."""
    sched = cron("0 0 * * *", tz)
    for found in (next_run(sched, at, at), last_run(sched, at, at)):
        assert found is None or isinstance(found, datetime)
    every = IntervalSchedule(type="interval", every_seconds=366 * 86400)
    assert next_run(every, at, at) is None or at.year == 1

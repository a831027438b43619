from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.occurrences import first_run, next_run
from schemas.v1.schedules import CronSchedule, IntervalSchedule, OnceSchedule

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

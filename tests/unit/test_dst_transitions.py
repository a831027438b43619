"""Known transitions, by hand: what each policy does on the days the clocks change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from schemas.v1.schedules import CronSchedule, DstPolicy
from timetable.occurrences import last_run, next_run, occurrences
from timetable.preview import preview

HOUR, QUARTER = timedelta(hours=1), timedelta(minutes=15)


def cron(expr: str, tz: str, gap: str = "shift", fold: str | None = None) -> CronSchedule:
    return CronSchedule(
        type="cron",
        expression=expr,
        timezone=tz,
        dst=DstPolicy.model_validate({"gap": gap, "fold": fold}),
    )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local_day(tz: str, year: int, month: int, day: int) -> tuple[datetime, datetime]:
    """The UTC bounds of one local calendar day: ``(midnight - 1 µs, next midnight - 1 µs)``."""
    zone = ZoneInfo(tz)
    start = datetime(year, month, day, tzinfo=zone).astimezone(UTC)
    end = (datetime(year, month, day, tzinfo=zone) + timedelta(days=1)).astimezone(UTC)
    tick = timedelta(microseconds=1)
    return start - tick, end - tick


def runs_on(schedule: CronSchedule, year: int, month: int, day: int) -> list[datetime]:
    lo, hi = local_day(schedule.timezone, year, month, day)
    return occurrences(schedule, after=lo, anchor=lo, limit=1000, until=hi)


def gaps(runs: list[datetime]) -> set[timedelta]:
    return {b - a for a, b in pairwise(runs)}


def walls(runs: list[datetime], tz: str) -> list[str]:
    return [r.astimezone(ZoneInfo(tz)).strftime("%H:%M%z") for r in runs]


# Transitions whose jump is one hour: an hourly or every-15-minute cron keeps its rhythm in
# UTC with the default policy (gap=shift, fold=both since the hour field is "*").
ONE_HOUR_DAYS = [
    ("Europe/Berlin", (2026, 3, 29), 23),
    ("Europe/Berlin", (2026, 10, 25), 25),
    ("America/New_York", (2026, 3, 8), 23),
    ("America/New_York", (2026, 11, 1), 25),
    ("America/Sao_Paulo", (2018, 11, 4), 23),  # the last spring-forward before abolition
    ("America/Sao_Paulo", (2019, 2, 16), 25),  # the last fall-back
]


@pytest.mark.parametrize(("tz", "day", "hours"), ONE_HOUR_DAYS)
def test_hourly_neither_skips_nor_doubles(tz: str, day: tuple[int, int, int], hours: int) -> None:
    runs = runs_on(cron("0 * * * *", tz), *day)
    assert len(runs) == hours  # one run per hour the day really has
    assert gaps(runs) == {HOUR}


@pytest.mark.parametrize(("tz", "day", "hours"), ONE_HOUR_DAYS)
def test_every_15_minutes_neither_skips_nor_doubles(
    tz: str, day: tuple[int, int, int], hours: int
) -> None:
    runs = runs_on(cron("*/15 * * * *", tz), *day)
    assert len(runs) == 4 * hours
    assert gaps(runs) == {QUARTER}


def test_berlin_spring_forward() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC): 02:xx never shows.
    hourly = runs_on(cron("0 * * * *", "Europe/Berlin"), 2026, 3, 29)
    assert walls(hourly[:4], "Europe/Berlin") == [
        "00:00+0100",
        "01:00+0100",
        "03:00+0200",  # 02:00 shifted to 03:00 is the real 03:00: one run
        "04:00+0200",
    ]
    # A daily 02:30 runs once, at 03:30 CEST (the same distance after the jump) ...
    assert runs_on(cron("30 2 * * *", "Europe/Berlin"), 2026, 3, 29) == [utc(2026, 3, 29, 1, 30)]
    # ... or not at all under gap=skip, and as usual the days around.
    skip = cron("30 2 * * *", "Europe/Berlin", gap="skip")
    assert runs_on(skip, 2026, 3, 29) == []
    assert occurrences(skip, utc(2026, 3, 28), utc(2026, 3, 28), 2) == [
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 30, 0, 30),
    ]


def test_berlin_fall_back() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET (01:00 UTC): 02:xx shows twice.
    hourly = runs_on(cron("0 * * * *", "Europe/Berlin"), 2026, 10, 25)
    assert walls(hourly[1:5], "Europe/Berlin") == [
        "01:00+0200",
        "02:00+0200",
        "02:00+0100",
        "03:00+0100",
    ]
    # A daily 02:30 runs once, on the first pass (fold=first is the default for it) ...
    assert runs_on(cron("30 2 * * *", "Europe/Berlin"), 2026, 10, 25) == [utc(2026, 10, 25, 0, 30)]
    # ... and on both passes when asked.
    both = cron("30 2 * * *", "Europe/Berlin", fold="both")
    assert runs_on(both, 2026, 10, 25) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)]
    # An hourly cron told fold=first runs 02:00 once: a two-hour gap in UTC, by request.
    first = runs_on(cron("0 * * * *", "Europe/Berlin", fold="first"), 2026, 10, 25)
    assert len(first) == 24 and HOUR * 2 in gaps(first)


def test_new_york_spring_forward_and_fall_back() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC); 2026-11-01 02:00 EDT -> 01:00 EST (06:00).
    ny = "America/New_York"
    assert runs_on(cron("30 2 * * *", ny), 2026, 3, 8) == [utc(2026, 3, 8, 7, 30)]
    assert runs_on(cron("30 2 * * *", ny, gap="skip"), 2026, 3, 8) == []
    assert runs_on(cron("30 1 * * *", ny), 2026, 11, 1) == [utc(2026, 11, 1, 5, 30)]
    assert runs_on(cron("30 1 * * *", ny, fold="both"), 2026, 11, 1) == [
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6, 30),
    ]
    # 02:30 exists once on the fall-back day: it is not in the fold.
    assert runs_on(cron("30 2 * * *", ny), 2026, 11, 1) == [utc(2026, 11, 1, 7, 30)]


def test_next_run_from_inside_a_fold() -> None:
    """Asked from the second pass of 01:xx, the engine does not go back to the first."""
    ny = "America/New_York"
    second_pass = utc(2026, 11, 1, 6, 10)  # 01:10 EST, after 01:10 EDT an hour earlier
    assert next_run(cron("0 * * * *", ny), second_pass, second_pass) == utc(2026, 11, 1, 7)
    assert next_run(cron("30 1 * * *", ny), second_pass, second_pass) == utc(2026, 11, 2, 6, 30)
    both = cron("30 1 * * *", ny, fold="both")
    assert next_run(both, second_pass, second_pass) == utc(2026, 11, 1, 6, 30)
    # First pass of 01:xx: the next 01:30 is the first pass's; strictly after a run, not it.
    first_pass = utc(2026, 11, 1, 5, 30)
    assert next_run(both, first_pass, first_pass) == utc(2026, 11, 1, 6, 30)


def test_lord_howe_half_hour_jumps() -> None:
    """Lord Howe moves by 30 minutes: 02:00 -> 02:30 in October, 02:00 -> 01:30 in April."""
    lh = "Australia/Lord_Howe"
    spring = preview(cron("0 * * * *", lh), utc(2026, 10, 3, 13), 5)
    assert [(e["local"].strftime("%H:%M%z"), e["shifted"]) for e in spring] == [
        ("00:00+1030", False),
        ("01:00+1030", False),
        ("02:30+1100", True),  # 02:00 does not exist: it runs 30 minutes after the jump
        ("03:00+1100", False),
        ("04:00+1100", False),
    ]
    assert len(runs_on(cron("0 * * * *", lh), 2026, 10, 4)) == 24  # every wall hour once
    assert len(runs_on(cron("0 * * * *", lh, gap="skip"), 2026, 10, 4)) == 23
    # Every 15 minutes on the 24.5-hour April day: 01:30 and 01:45 run twice, and the
    # rhythm in UTC never breaks.
    fall = runs_on(cron("*/15 * * * *", lh), 2026, 4, 5)
    assert len(fall) == 98 and gaps(fall) == {QUARTER}
    spring_q = runs_on(cron("*/15 * * * *", lh), 2026, 10, 4)
    assert len(spring_q) == 94 and gaps(spring_q) == {QUARTER}


def test_sao_paulo_before_and_after_abolishing_dst() -> None:
    sp = "America/Sao_Paulo"
    # 2018-11-04 00:00 -03 -> 01:00 -02: a midnight job runs at 01:00 -02 (03:00 UTC).
    assert runs_on(cron("0 0 * * *", sp), 2018, 11, 4) == [utc(2018, 11, 4, 3)]
    assert walls(runs_on(cron("0 0 * * *", sp), 2018, 11, 4), sp) == ["01:00-0200"]
    # 2019-11-03, when the clocks would have changed, they no longer do.
    assert runs_on(cron("0 0 * * *", sp), 2019, 11, 3) == [utc(2019, 11, 3, 3)]
    year = occurrences(cron("0 12 * * *", sp), utc(2020, 1, 1), utc(2020, 1, 1), 366)
    assert {r.hour for r in year} == {15}  # -03:00 all year
    # 2019-02-16 24:00 -> 23:00: 23:30 shows twice and a daily 23:30 runs once.
    assert runs_on(cron("30 23 * * *", sp), 2019, 2, 16) == [utc(2019, 2, 17, 1, 30)]


def test_tehran_abolished_dst_in_2022() -> None:
    tehran = "Asia/Tehran"
    runs = runs_on(cron("0 * * * *", tehran), 2022, 9, 21)  # 24:00 -> 23:00 that night
    assert len(runs) == 25 and gaps(runs) == {HOUR}
    assert len(runs_on(cron("0 * * * *", tehran), 2023, 9, 21)) == 24


def test_seconds_cron_keeps_its_rhythm_across_a_jump() -> None:
    runs = occurrences(
        cron("*/20 * * * * *", "Europe/Berlin"),
        utc(2026, 3, 29, 0, 59),
        utc(2026, 3, 29),
        limit=6,
    )
    assert gaps(runs) == {timedelta(seconds=20)} and runs[2] == utc(2026, 3, 29, 1)


def test_last_run_lands_on_the_shifted_run() -> None:
    """Catch-up ``latest`` after an outage over the jump: the shifted 02:30 is the latest."""
    schedule = cron("30 2 * * *", "Europe/Berlin")
    assert last_run(schedule, utc(2026, 3, 29, 12), utc(2026, 1, 1)) == utc(2026, 3, 29, 1, 30)
    skip = cron("30 2 * * *", "Europe/Berlin", gap="skip")
    assert last_run(skip, utc(2026, 3, 29, 12), utc(2026, 1, 1)) == utc(2026, 3, 28, 1, 30)

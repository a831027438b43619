"""Exclusions (``timetable.exclusions``): which occurrences a schedule skips, and the bounded
check that an exclusion leaves something to run.

The calendar test is held against the brute-force reference of the DST tests
(``tests.unit.test_dst_properties.reference``), filtered by the local weekday that zoneinfo
reads for each instant: nothing of the engine's segment walk or of the exclusion matcher.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.v1.schedules import CronSchedule, Exclusions, Schedule
from tests.unit.test_dst_properties import reference
from timetable.backfill import backfill_occurrences
from timetable.exclusions import (
    UnknownCalendar,
    excluded,
    exclusion_problem,
    first_included,
    with_calendars,
)
from timetable.occurrences import occurrences
from timetable.preview import preview

SCHEDULE: TypeAdapter[Any] = TypeAdapter(Schedule)
NEW_YORK = "America/New_York"
WEEKDAYS = {"weekdays": Exclusions(cron=["* * * * 0,6"])}


def weekday_job(expression: str) -> CronSchedule:
    """A cron in New York that names the tenant's "weekdays" calendar, resolved as the shard
    resolves it."""
    schedule = SCHEDULE.validate_python(
        {
            "type": "cron",
            "expression": expression,
            "timezone": NEW_YORK,
            "exclude": {"calendars": ["weekdays"]},
        }
    )
    resolved: CronSchedule = with_calendars(schedule, WEEKDAYS)
    return resolved


@pytest.mark.parametrize(
    ("lo", "hi"),
    [
        # Spring forward on Sunday 2026-03-08, 02:00 -> 03:00: Saturday starts at 05:00 UTC,
        # Monday at 04:00 UTC.
        (datetime(2026, 3, 4, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC)),
        # Fall back on Sunday 2026-11-01, 02:00 -> 01:00.
        (datetime(2026, 10, 28, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC)),
    ],
)
@pytest.mark.parametrize("expression", ["30 2 * * *", "*/20 * * * *", "0 0,1,23 * * *"])
def test_a_weekday_calendar_around_a_dst_change_matches_the_brute_force_reference(
    lo: datetime, hi: datetime, expression: str
) -> None:
    schedule = weekday_job(expression)
    zone = ZoneInfo(NEW_YORK)
    everything = reference(expression, NEW_YORK, "shift", None, lo, hi)
    expected = [at for at in everything if at.astimezone(zone).weekday() < 5]
    assert len(expected) < len(everything), "the week has a weekend"

    fires = occurrences(schedule, lo, lo, 10_000, until=hi)
    assert fires == everything  # the exclusion removes occurrences; it never moves one
    assert [at for at in fires if excluded(schedule, at) is None] == expected
    for at in fires:
        if at not in expected:
            assert excluded(schedule, at) == "excluded: calendar weekdays, cron '* * * * 0,6'"

    shown = preview(schedule, lo, 1000)
    shown = [entry for entry in shown if entry["utc"] <= hi]
    assert [e["utc"] for e in shown if e["excluded"] is None] == expected


def test_date_ranges_are_local_dates_both_ends_included() -> None:
    schedule = SCHEDULE.validate_python(
        {
            "type": "cron",
            "expression": "0 23 * * *",
            "timezone": NEW_YORK,
            "exclude": {"dates": [{"from": "2026-12-24", "to": "2026-12-25"}]},
        }
    )
    # 23:00 in New York on the 25th is 04:00 UTC on the 26th: still excluded.
    assert excluded(schedule, datetime(2026, 12, 26, 4, tzinfo=UTC)) == (
        "excluded: exclude, dates 2026-12-24 to 2026-12-25"
    )
    assert excluded(schedule, datetime(2026, 12, 24, 4, tzinfo=UTC)) is None  # the 23rd
    assert excluded(schedule, datetime(2026, 12, 27, 4, tzinfo=UTC)) is None  # the 26th
    start = datetime(2026, 12, 24, 0, tzinfo=UTC)
    assert first_included(schedule, start + timedelta(hours=5), start) == datetime(
        2026, 12, 27, 4, tzinfo=UTC
    )


def test_an_interval_is_read_in_utc() -> None:
    schedule = SCHEDULE.validate_python(
        {"type": "interval", "every_seconds": 3600, "exclude": {"cron": ["* 0-5 * * *"]}}
    )
    assert excluded(schedule, datetime(2026, 1, 5, 5, 59, tzinfo=UTC)) is not None
    assert excluded(schedule, datetime(2026, 1, 5, 6, 0, tzinfo=UTC)) is None


NOW = datetime(2026, 3, 7, 0, 0, tzinfo=UTC)  # a Saturday


@pytest.mark.parametrize(
    "exclude",
    [
        {"cron": ["* * * * *"]},
        {"dates": [{"from": "2026-01-01", "to": "2027-12-31"}]},
        {"cron": ["* * * * 1-5"], "dates": [{"from": "2026-03-01", "to": "2027-06-30"}]},
    ],
)
def test_an_exclusion_of_every_occurrence_within_the_horizon_is_a_problem(
    exclude: dict[str, Any],
) -> None:
    schedule = SCHEDULE.validate_python(
        {"type": "cron", "expression": "* * * * * *", "exclude": exclude}
    )
    assert exclusion_problem(schedule, NOW, NOW) is not None


def test_an_every_second_job_off_at_weekends_created_on_a_saturday_is_fine() -> None:
    schedule = SCHEDULE.validate_python(
        {"type": "cron", "expression": "* * * * * *", "exclude": {"cron": ["* * * * 0,6"]}}
    )
    assert exclusion_problem(schedule, NOW, NOW) is None
    assert first_included(schedule, NOW, NOW) == datetime(2026, 3, 9, 0, 0, tzinfo=UTC)


def test_an_unknown_calendar_is_named() -> None:
    schedule = SCHEDULE.validate_python(
        {"type": "cron", "expression": "0 9 * * *", "exclude": {"calendars": ["a", "b"]}}
    )
    with pytest.raises(UnknownCalendar, match="'b'"):
        with_calendars(schedule, {"a": Exclusions()})


@pytest.mark.parametrize(
    ("exclude", "where"),
    [
        ({"dates": [{"from": "2026-12-26", "to": "2026-12-24"}]}, "dates"),
        ({"cron": ["61 * * * *"]}, "cron"),
        ({"calendars": ["no spaces"]}, "calendars"),
        ({"holidays": []}, "holidays"),
    ],
)
def test_bad_exclusions_are_refused_by_the_model(exclude: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SCHEDULE.validate_python({"type": "cron", "expression": "0 9 * * *", "exclude": exclude})
    assert where in str(caught.value)


def test_a_backfill_does_not_run_what_the_exclusions_skip() -> None:
    # Weekdays at 09:00 in New York, weekends excluded: a backfill over a past week runs 5.
    schedule = SCHEDULE.validate_python(
        {
            "type": "cron",
            "expression": "0 9 * * *",
            "timezone": "America/New_York",
            "exclude": {"cron": ["* * * * 0,6"]},
        }
    )
    start = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
    runs = backfill_occurrences(
        schedule, start, start + timedelta(days=7), start + timedelta(days=30), anchor=start
    )
    assert [r.astimezone(ZoneInfo("America/New_York")).weekday() for r in runs] == [
        0,
        1,
        2,
        3,
        4,
    ]

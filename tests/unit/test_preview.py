from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas.v1.schedules import CronSchedule, DstPolicy, IntervalSchedule, OnceSchedule
from timetable.preview import MAX_COUNT, preview
from timetable.wallclock import format_offset

FROM = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def cron(expr: str, tz: str, **kw: Any) -> CronSchedule:
    return CronSchedule(type="cron", expression=expr, timezone=tz, **kw)


def test_cron_entries_are_in_utc_and_in_the_jobs_zone() -> None:
    """Berlin springs forward on Sunday 2026-03-29 at 02:00 CET (+01:00) to 03:00 CEST (+02:00):
    02:30 does not exist that night and runs at 03:30 CEST (01:30Z); the next night's 02:30
    CEST is 00:30Z. The expected values are written out, not derived from the output."""
    entries = preview(cron("30 2 * * *", "Europe/Berlin"), FROM, 2)
    assert [(e["utc"], e["offset"], e["fold"], e["shifted"], e["nominal"]) for e in entries] == [
        (
            datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
            "+02:00",
            False,
            True,
            datetime(2026, 3, 29, 2, 30),
        ),
        (
            datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
            "+02:00",
            False,
            False,
            datetime(2026, 3, 30, 2, 30),
        ),
    ]
    # The local time: Berlin's wall clock, in Berlin's zone (not only the same instant).
    assert [e["local"].isoformat() for e in entries] == [
        "2026-03-29T03:30:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    assert all(e["local"].tzinfo == BERLIN for e in entries)
    assert [e["local"].replace(tzinfo=None) for e in entries] == [
        datetime(2026, 3, 29, 3, 30),
        datetime(2026, 3, 30, 2, 30),
    ]


def test_entries_before_the_change_are_in_winter_time() -> None:
    """The day before the change, 02:30 is CET (+01:00): 01:30Z."""
    (entry,) = preview(
        cron("30 2 * * *", "Europe/Berlin"), datetime(2026, 3, 27, 12, tzinfo=UTC), 1
    )
    assert entry["utc"] == datetime(2026, 3, 28, 1, 30, tzinfo=UTC)
    assert entry["local"].isoformat() == "2026-03-28T02:30:00+01:00"
    assert (entry["offset"], entry["shifted"]) == ("+01:00", False)


def test_fold_marks_the_second_pass() -> None:
    entries = preview(
        cron("30 1 * * *", "America/New_York", dst=DstPolicy(fold="both")),
        datetime(2026, 11, 1, tzinfo=UTC),
        2,
    )
    assert [(e["local"].isoformat(), e["offset"], e["fold"]) for e in entries] == [
        ("2026-11-01T01:30:00-04:00", "-04:00", False),
        ("2026-11-01T01:30:00-05:00", "-05:00", True),
    ]


def test_skip_policy_leaves_the_gap_out() -> None:
    entries = preview(cron("30 2 * * *", "Europe/Berlin", dst=DstPolicy(gap="skip")), FROM, 1)
    assert entries[0]["local"].isoformat() == "2026-03-30T02:30:00+02:00"


@pytest.mark.parametrize(
    ("tz", "offset"),
    [("Asia/Kolkata", "+05:30"), ("Pacific/Chatham", "+13:45"), ("America/Sao_Paulo", "-03:00")],
)
def test_offsets_of_odd_zones(tz: str, offset: str) -> None:
    assert preview(cron("0 12 * * *", tz), FROM, 1)[0]["offset"] == offset


def test_interval_and_once_are_shown_in_utc() -> None:
    every = IntervalSchedule(type="interval", every_seconds=3600)
    entries = preview(every, FROM, 3)
    assert [e["utc"] for e in entries] == [FROM + timedelta(hours=h) for h in (1, 2, 3)]
    assert all(e["local"] == e["utc"] and e["offset"] == "+00:00" for e in entries)
    anchored = preview(every, FROM, 1, anchor=FROM - timedelta(minutes=59))
    assert anchored[0]["utc"] == FROM + timedelta(minutes=1)
    once = OnceSchedule(type="once", at=FROM + timedelta(days=1))
    assert [e["utc"] for e in preview(once, FROM, 5)] == [FROM + timedelta(days=1)]
    assert preview(once, FROM + timedelta(days=2), 5) == []  # already past


def test_count_max_runs_and_end_at_bound_the_preview() -> None:
    assert len(preview(cron("* * * * * *", "UTC"), FROM, 10**6)) == MAX_COUNT
    assert len(preview(cron("* * * * *", "UTC", max_runs=3), FROM, 10)) == 3
    ends = cron("0 * * * *", "UTC", end_at=FROM + timedelta(hours=2))
    assert len(preview(ends, FROM, 10)) == 2
    assert preview(cron("* * * * *", "UTC"), FROM, 0) == []


def test_format_offset() -> None:
    assert format_offset(timedelta(hours=-9, minutes=-30)) == "-09:30"
    assert format_offset(timedelta(minutes=53, seconds=28)) == "+00:53:28"  # Amsterdam LMT
    assert format_offset(timedelta(0)) == "+00:00"

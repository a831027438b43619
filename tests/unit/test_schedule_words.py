"""timetable.words: schedules in words, and cron expressions said only when their shape is
common (any other is shown as written)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.v1.schedules import CronSchedule, IntervalSchedule, OnceSchedule
from timetable.words import cron_words, every, schedule_words


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * * *", "every minute"),
        ("*/5 * * * *", "every 5 minutes"),
        ("*/10 * * * * *", "every 10 seconds"),
        ("* * * * * *", "every second"),
        ("0 */5 * * * *", "every 5 minutes"),
        ("5 * * * *", "every hour at :05"),
        ("15 */6 * * *", "every 6 hours at :15"),
        ("0 9 * * *", "every day at 09:00"),
        ("30 0 9 * * *", "every day at 09:00:30"),
        ("0 9 * * 1-5", "at 09:00, Monday to Friday"),
        ("0 9 * * MON-FRI", "at 09:00, Monday to Friday"),
        ("0 10 * * 0,6", "at 10:00, on Saturday and Sunday"),
        ("0 10 * * 6,7", "at 10:00, on Saturday and Sunday"),
        ("0 8 * * 1", "at 08:00, on Monday"),
        ("0 8 * * 1,3,5", "at 08:00, on Monday, Wednesday and Friday"),
        ("0 3 1 * *", "at 03:00, on day 1 of the month"),
        ("*/15 * * * 1-5", "every 15 minutes, Monday to Friday"),
    ],
)
def test_common_shapes_are_said_in_words(expression: str, words: str) -> None:
    assert cron_words(expression) == words


@pytest.mark.parametrize(
    "expression",
    ["0 9 * 1 *", "0 9 1 * 1", "5,35 * * * *", "0 9-17 * * *", "0 9 L * *", "30 * * * * *"],
)
def test_other_shapes_are_shown_as_written(expression: str) -> None:
    assert cron_words(expression) == f'cron "{expression}"'


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "every second"),
        (1.5, "every 1.5 seconds"),
        (90, "every 90 seconds"),
        (300, "every 5 minutes"),
        (3600, "every hour"),
        (7200, "every 2 hours"),
        (86400, "every day"),
        (5400, "every 90 minutes"),
    ],
)
def test_intervals(seconds: float, words: str) -> None:
    assert every(seconds) == words


def test_schedules_name_their_zone_or_instant() -> None:
    cron = CronSchedule(type="cron", expression="*/5 * * * *", timezone="Europe/Berlin")
    assert schedule_words(cron) == "every 5 minutes, Europe/Berlin"
    assert schedule_words(IntervalSchedule(type="interval", every_seconds=60)) == "every minute"
    at = datetime(2026, 12, 5, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    once = OnceSchedule(type="once", at=at)
    assert schedule_words(once) == "once, at 2026-12-05 10:00:00 UTC"
    assert at.astimezone(UTC).hour == 10

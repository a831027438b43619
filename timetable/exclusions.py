"""Which occurrences a schedule's exclusions skip: a pure function of the schedule.

An occurrence is excluded when its local date (in the job's zone; UTC for an interval) lies
in one of the date ranges, or its local wall time matches one of the cron expressions (a
5-field expression matches the whole minute it names). The rules are the schedule's own
``exclude`` and the named calendars' rules the shard copied into ``exclude.resolved``.

The firing plan (``scheduler.firing``) records an excluded occurrence as skipped, with the
rule as the reason; the preview marks it; and a schedule whose exclusions leave it nothing to
run is refused, by the bounded check of :func:`first_included`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from schemas.v1.schedules import CronSchedule, Exclusions, IntervalSchedule
from timetable.occurrences import Schedule, occurrences, walls_after
from timetable.wallclock import NAIVE_EPOCH, SECOND

# The bounded check that an exclusion leaves something to run: an occurrence that is not
# excluded within this horizon, looking at no more than SCAN_LIMIT occurrences (a date range
# is jumped over whole, and a 5-field exclusion by the minute).
HORIZON = timedelta(days=366)
SCAN_LIMIT = 10_000


def _rules(schedule: Schedule) -> Iterator[tuple[str, Exclusions]]:
    """(where the rules come from, the rules): the schedule's own, then each calendar's."""
    if isinstance(schedule, CronSchedule | IntervalSchedule) and schedule.exclude is not None:
        yield "exclude", schedule.exclude
        for name, rules in (schedule.exclude.resolved or {}).items():
            yield f"calendar {name}", rules


def has_exclusions(schedule: Schedule) -> bool:
    return any(rules.dates or rules.cron for _, rules in _rules(schedule))


def _zone(schedule: Schedule) -> ZoneInfo:
    return ZoneInfo(schedule.timezone if isinstance(schedule, CronSchedule) else "UTC")


def excluded(schedule: Schedule, at: datetime) -> str | None:
    """Why the occurrence at ``at`` is skipped (``"excluded: calendar us, dates 2026-12-25 to
    2026-12-25"``), or ``None`` when it runs. The words before the first colon are the same
    for every exclusion (a metric's label)."""
    return _excluded(schedule, at)[0]


def _excluded(schedule: Schedule, at: datetime) -> tuple[str | None, datetime | None]:
    """The reason, and the last instant the same rule excludes for sure (to skip ahead)."""
    if not has_exclusions(schedule):
        return None, None
    zone = _zone(schedule)
    local = at.astimezone(zone)
    day = local.date()
    wall = int((local.replace(tzinfo=None) - NAIVE_EPOCH) // SECOND)
    for source, rules in _rules(schedule):
        for span in rules.dates:
            if span.from_ <= day <= span.to:
                end = datetime.combine(span.to + timedelta(days=1), datetime.min.time(), zone)
                reason = f"excluded: {source}, dates {span.from_.isoformat()} to {span.to}"
                return reason, end - timedelta(microseconds=1)
        for expression in rules.cron:
            five = len(expression.split()) == 5
            start = wall - wall % 60 if five else wall
            if walls_after(expression, start - 1) == start:
                # A 5-field rule excludes the whole minute: skip to its last second.
                ahead = at + timedelta(seconds=59 - wall % 60) if five else None
                return f"excluded: {source}, cron {expression!r}", ahead
    return None, None


def first_included(schedule: Schedule, after: datetime, anchor: datetime) -> datetime | None:
    """The first occurrence after ``after`` that is not excluded, if one is found within
    :data:`HORIZON` looking at no more than :data:`SCAN_LIMIT` occurrences; else ``None``.

    A schedule with no occurrence at all also gives ``None``: its caller refuses that
    already, in its own words.
    """
    horizon = after + HORIZON
    cursor = after
    for _ in range(SCAN_LIMIT):
        found = occurrences(schedule, cursor, anchor, 1, until=horizon)
        if not found:
            return None
        reason, ahead = _excluded(schedule, found[0])
        if reason is None:
            return found[0]
        cursor = max(found[0], ahead) if ahead is not None else found[0]
    return None


def exclusion_problem(schedule: Schedule, now: datetime, anchor: datetime) -> str | None:
    """What is wrong with the schedule's exclusions, or ``None``: they must leave an
    occurrence to run within the bounded look-ahead of :func:`first_included`."""
    if not has_exclusions(schedule) or not occurrences(schedule, now, anchor, 1):
        return None
    if first_included(schedule, now, anchor) is None:
        return (
            f"excludes every occurrence in the next {HORIZON.days} days (or the next "
            f"{SCAN_LIMIT} occurrences): nothing would run"
        )
    return None


class UnknownCalendar(ValueError):
    """A schedule names calendars the tenant has not defined."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"unknown calendar: {', '.join(repr(n) for n in names)}")
        self.names = names


def calendar_names(schedule: Schedule) -> list[str]:
    exclude = getattr(schedule, "exclude", None)
    return list(exclude.calendars) if exclude is not None else []


def needs_calendars(schedule: Schedule) -> bool:
    """Whether storing the schedule needs the tenant's calendars (it names some, or carries
    a ``resolved`` the scheduler must overwrite: a client's copy is never trusted)."""
    exclude = getattr(schedule, "exclude", None)
    return exclude is not None and (bool(exclude.calendars) or exclude.resolved is not None)


def with_calendars(schedule: Schedule, found: dict[str, Exclusions]) -> Schedule:
    """The schedule with the rules of the calendars it names (``found``: the tenant's, by
    name) copied into ``exclude.resolved``; ``UnknownCalendar`` for a name not found."""
    if not isinstance(schedule, CronSchedule | IntervalSchedule) or schedule.exclude is None:
        return schedule
    names = schedule.exclude.calendars
    missing = [name for name in names if name not in found]
    if missing:
        raise UnknownCalendar(missing)
    resolved = {name: found[name] for name in names} or None
    exclude = schedule.exclude.model_copy(update={"resolved": resolved})
    return schedule.model_copy(update={"exclude": exclude})

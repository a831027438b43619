"""What a schedule will do: its next fire times, in UTC and on the job's own wall clock.

Pure; ``POST /v1/schedules/preview`` serves it. Users read a cron's behaviour across a
daylight-saving change here before they trust it, so each entry says when a run was moved out
of a gap (``shifted``, with the wall time the expression named) and when it is the second pass
of a repeated wall time (``fold``).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import TypedDict
from zoneinfo import ZoneInfo

from schemas.v1.schedules import CronSchedule, OnceSchedule
from timetable.exclusions import excluded
from timetable.occurrences import Schedule, cron_fires, occurrences
from timetable.wallclock import format_offset

MAX_COUNT = 1000


class PreviewEntry(TypedDict):
    utc: datetime  # aware, UTC
    local: datetime  # aware, in the job's zone (UTC for interval and once)
    offset: str  # the zone's offset at that instant, "+01:00"
    fold: bool  # the local wall time occurs twice and this is its second pass
    shifted: bool  # the expression named a wall time that did not exist (gap=shift)
    nominal: datetime  # naive: the wall time the schedule named (differs only when shifted)
    excluded: str | None  # why the occurrence is skipped (exclude, a calendar), else None


def preview(
    schedule: Schedule, from_: datetime, count: int, anchor: datetime | None = None
) -> list[PreviewEntry]:
    """The first ``count`` fire times of a job created at ``from_``.

    Strictly after ``from_``, as for a new job (a ``once`` time in the past is left out: the
    API refuses it), within ``start_at``/``end_at``, and no more than ``max_runs``. An
    occurrence the schedule's exclusions skip is listed, with the reason in ``excluded``.
    ``anchor`` is the origin of an interval without ``start_at``; it defaults to ``from_``,
    as a job created then would have it. ``count`` is capped at :data:`MAX_COUNT`.
    """
    count = max(0, min(count, MAX_COUNT))
    if not isinstance(schedule, OnceSchedule) and schedule.max_runs is not None:
        count = min(count, schedule.max_runs)
    zone: tzinfo
    fires: list[tuple[datetime, datetime | None]]
    if isinstance(schedule, CronSchedule):
        zone = ZoneInfo(schedule.timezone)
        fires = [(fire.at, fire.nominal) for fire in cron_fires(schedule, from_, count)]
    else:
        zone = UTC
        fires = [(at, None) for at in occurrences(schedule, from_, anchor or from_, count)]
    return [_entry(at, zone, nominal, excluded(schedule, at)) for at, nominal in fires]


def _entry(
    at: datetime, zone: tzinfo, nominal: datetime | None, reason: str | None
) -> PreviewEntry:
    local = at.astimezone(zone)
    offset = local.utcoffset()
    assert offset is not None  # an aware datetime in a real zone
    wall = local.replace(tzinfo=None, fold=0)
    return PreviewEntry(
        utc=at,
        local=local,
        offset=format_offset(offset),
        # zoneinfo's fromutc marks the second pass of a repeated wall time with fold=1.
        fold=local.fold == 1,
        shifted=nominal is not None and nominal != wall,
        nominal=nominal or wall,
        excluded=reason,
    )

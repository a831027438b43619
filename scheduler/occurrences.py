"""When does a job fire next? Pure functions of the schedule and the clock.

Times are UTC in and out. Cron expressions are evaluated in the job's IANA zone.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from schemas.v1.schedules import CronSchedule, IntervalSchedule, OnceSchedule

Schedule = OnceSchedule | CronSchedule | IntervalSchedule


def first_run(schedule: Schedule, now: datetime, anchor: datetime) -> datetime | None:
    """The first occurrence of a newly created job.

    A ``once`` job returns its time even when it lies slightly in the past: the caller has
    already refused times beyond the grace, and a late one-shot should still run.
    """
    if isinstance(schedule, OnceSchedule):
        return schedule.at.astimezone(UTC)
    return next_run(schedule, after=now, anchor=anchor)


def next_run(schedule: Schedule, after: datetime, anchor: datetime) -> datetime | None:
    """The first occurrence strictly after ``after``; ``None`` when there is none."""
    if isinstance(schedule, OnceSchedule):
        at = schedule.at.astimezone(UTC)
        return at if at > after else None
    if isinstance(schedule, IntervalSchedule):
        # Anchored at the job's creation: the sequence is anchor + k*every, so a slow
        # fire never drifts the later ones.
        every = schedule.every_seconds
        k = math.floor((after - anchor).total_seconds() / every) + 1
        candidate = anchor + timedelta(seconds=k * every)
        while candidate <= after:  # float rounding at an exact boundary
            candidate += timedelta(seconds=every)
        return candidate
    zone = ZoneInfo(schedule.timezone)
    local_after = after.astimezone(zone)
    second_field = len(schedule.expression.split()) == 6
    # A sixth field is seconds, first (as in Quartz, Spring and Dkron): "*/5 * * * * *".
    it = croniter(schedule.expression, local_after, second_at_beginning=second_field)
    nxt: datetime = it.get_next(datetime)
    if not second_field:
        nxt = nxt.replace(second=0, microsecond=0)
    return nxt.astimezone(UTC)

"""The tenant's named calendars, copied into a schedule when the shard stores a job."""

from __future__ import annotations

import asyncpg

from core.queries import QUERIES
from schemas.v1.schedules import Exclusions
from timetable.exclusions import calendar_names, needs_calendars, with_calendars
from timetable.occurrences import Schedule


async def resolve_calendars(pool: asyncpg.Pool, user_id: str, schedule: Schedule) -> Schedule:
    """``schedule`` with its named calendars' rules in ``exclude.resolved``, read now: the
    job keeps this copy. ``timetable.exclusions.UnknownCalendar`` for a name the tenant has
    not defined."""
    if not needs_calendars(schedule):
        return schedule
    rows = await pool.fetch(QUERIES["calendars_by_name"], user_id, calendar_names(schedule))
    found = {r["name"]: Exclusions.model_validate(r["exclude"]) for r in rows}
    return with_calendars(schedule, found)

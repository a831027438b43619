"""The tenant's named calendars, copied into a schedule when the shard stores a job."""

from __future__ import annotations

import asyncpg

from core.queries import QUERIES
from scheduler.store.shards import fenced
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


async def define_calendar(
    pool: asyncpg.Pool, shard: int, epoch: int, user_id: str, name: str, rules: Exclusions
) -> str:
    """Store a tenant's calendar from a command, fenced by the shard that owns the tenant:
    ``defined``, or ``duplicate`` when the very same calendar is stored under the name already
    (a redelivery); ``CalendarTaken`` when another one is."""
    stored = rules.model_dump(mode="json")
    async with fenced(pool, shard, epoch) as conn:
        if await conn.fetchrow(QUERIES["insert_calendar"], user_id, name, stored) is not None:
            return "defined"
        existing = await conn.fetchrow(QUERIES["get_calendar"], user_id, name)
    if existing is not None and existing["exclude"] == stored:
        return "duplicate"
    raise CalendarTaken(f"define_calendar: calendar {name!r} exists already, with other rules")


async def delete_calendar(
    pool: asyncpg.Pool, shard: int, epoch: int, user_id: str, name: str
) -> str:
    """Delete a tenant's calendar from a command, fenced: ``deleted``, or ``absent`` (a
    redelivery, or a name never defined: nothing to do either way)."""
    async with fenced(pool, shard, epoch) as conn:
        deleted = await conn.fetchval(QUERIES["delete_calendar"], user_id, name)
    return "deleted" if deleted is not None else "absent"


class CalendarTaken(Exception):
    """A calendar of that name, with other rules, is the tenant's already."""

"""A schedule's exclusions checked at the API, as the owning shard will check them: every
named calendar exists for the tenant, and the rules leave something to run."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from api import queries
from api.deps import DEPS
from api.errors import FieldError
from schemas.v1.schedules import Exclusions
from timetable.exclusions import (
    UnknownCalendar,
    calendar_names,
    exclusion_problem,
    needs_calendars,
    with_calendars,
)
from timetable.occurrences import Schedule


async def resolved_schedule(
    request: web.Request, user_id: str, schedule: Schedule, field: str = "schedule"
) -> Schedule:
    """``schedule`` with its calendars' rules copied in (as the shard will copy them), or a
    ``FieldError`` on ``<field>.exclude.calendars`` naming the calendars the tenant lacks."""
    if not needs_calendars(schedule):
        return schedule
    stored = await queries.calendars_by_name(
        request.app[DEPS].pool, user_id, calendar_names(schedule)
    )
    found = {name: Exclusions.model_validate(rules) for name, rules in stored.items()}
    try:
        return with_calendars(schedule, found)
    except UnknownCalendar as exc:
        raise FieldError([(f"{field}.exclude.calendars", str(exc))]) from None


async def check_schedule(
    request: web.Request,
    user_id: str,
    schedule: Schedule,
    now: datetime,
    field: str = "schedule",
) -> None:
    """A ``FieldError`` for an unknown calendar, or on ``<field>.exclude`` when the
    exclusions leave nothing to run (the bounded check of ``timetable.exclusions``)."""
    schedule = await resolved_schedule(request, user_id, schedule, field)
    problem = exclusion_problem(schedule, now, now)
    if problem is not None:
        raise FieldError([(f"{field}.exclude", problem)])

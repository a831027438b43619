"""``/v1/calendars``: named exclusions a tenant defines once and names from many jobs.

A calendar holds date ranges and cron rules (``schemas.v1.schedules.Exclusions``), read in
the zone of each job that names it. It is written here, by the API, at once; the owning shard
copies its rules into a job when it stores the job (``exclude.resolved``), so deleting a
calendar, or creating another under the same name, changes no job until the job is updated.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api import queries
from api.deps import DEPS
from api.errors import Conflict, NotFound
from api.tenancy import resolve_tenant
from api.validation import parse_json, validate_model
from api.views import model_response
from schemas.v1.jobs import USER_ID, UserId
from schemas.v1.schedules import CalendarName, Exclusions


class CalendarSpec(Exclusions):
    """The body of ``POST /v1/calendars``; ``user_id`` left out is the credential's tenant."""

    user_id: UserId | None = Field(default=None, min_length=1, max_length=128, pattern=USER_ID)
    name: CalendarName


class CalendarView(Exclusions):
    user_id: UserId
    name: CalendarName
    created_at: datetime


class CalendarList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calendars: list[CalendarView]


class CalendarQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Left out: the tenant of the request's credential.
    user_id: UserId | None = Field(default=None, min_length=1, max_length=128, pattern=USER_ID)


def _view(row: asyncpg.Record) -> CalendarView:
    return CalendarView(
        user_id=row["user_id"], name=row["name"], created_at=row["created_at"], **row["exclude"]
    )


async def _tenant(request: web.Request) -> str:
    query = validate_model(CalendarQuery, dict(request.query))
    return await resolve_tenant(request, query.user_id)


def _not_found(name: str) -> NotFound:
    return NotFound(f"no calendar {name!r}")


async def create_calendar(request: web.Request) -> web.Response:
    spec = validate_model(CalendarSpec, parse_json(await request.read()))
    tenant = await resolve_tenant(request, spec.user_id)
    rules = Exclusions(dates=spec.dates, cron=spec.cron).model_dump(mode="json")
    row = await queries.insert_calendar(request.app[DEPS].pool, tenant, spec.name, rules)
    if row is None:
        raise Conflict(f"calendar {spec.name!r} exists already")
    return model_response(_view(row), status=201, Location=f"/v1/calendars/{spec.name}")


async def list_calendars(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    rows = await queries.list_calendars(request.app[DEPS].pool, tenant)
    return model_response(CalendarList(calendars=[_view(r) for r in rows]))


async def get_calendar(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    row = await queries.get_calendar(request.app[DEPS].pool, await _tenant(request), name)
    if row is None:
        raise _not_found(name)
    return model_response(_view(row))


async def delete_calendar(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not await queries.delete_calendar(request.app[DEPS].pool, await _tenant(request), name):
        raise _not_found(name)
    return web.Response(status=204)

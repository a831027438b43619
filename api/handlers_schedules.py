"""``POST /v1/schedules/preview``: what a schedule will do, before a job trusts it.

The computation is the scheduler's own occurrence engine (``timetable.preview``, pure), so
the preview cannot disagree with what the shard will fire. Occurrences the schedule's
exclusions skip are listed with the reason (``excluded``); a named calendar is the
credential's tenant's.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.calendars import resolved_schedule
from api.tenancy import resolve_tenant
from api.validation import parse_json, validate_model
from api.views import model_response
from schemas.v1.schedules import Instant, Schedule
from timetable.exclusions import needs_calendars
from timetable.preview import MAX_COUNT, preview


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule: Schedule
    from_: Instant = Field(alias="from")
    count: int = Field(default=10, ge=1, le=MAX_COUNT)


class PreviewFire(BaseModel):
    utc: datetime
    local: datetime
    offset: str
    fold: bool
    shifted: bool
    nominal: datetime
    # Why the schedule's exclusions (exclude, a named calendar) skip it; null when it runs.
    excluded: str | None = None


class PreviewResponse(BaseModel):
    timezone: str
    fires: list[PreviewFire]


async def preview_schedule(request: web.Request) -> web.Response:
    body = validate_model(PreviewRequest, parse_json(await request.read()))
    schedule = body.schedule
    if needs_calendars(schedule):  # the credential's tenant's calendars
        tenant = await resolve_tenant(request, None)
        schedule = await resolved_schedule(request, tenant, schedule)
    fires = preview(schedule, body.from_, body.count)
    zone = getattr(body.schedule, "timezone", "UTC")
    return model_response(PreviewResponse(timezone=zone, fires=[PreviewFire(**f) for f in fires]))

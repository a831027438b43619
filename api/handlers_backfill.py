"""``POST /v1/jobs/{id}/backfill``: run a recurring job's past occurrences, each once.

The API checks the range against the job's stored schedule first (422 naming the field:
reversed, in the future, over the cap), with the function the owning shard applies
(``timetable.backfill``); the shard decides for good, and stores each occurrence's run at
most once, so a repeated backfill runs nothing again.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, TypeAdapter

from api import commands
from api.deps import DEPS
from api.errors import Conflict, FieldError
from api.handlers_jobs import owned_job, path_job_id, within_daily_runs
from api.validation import parse_json, validate_model
from api.views import model_response
from core.clock import utcnow
from schemas.v1.commands import BackfillCommand, BackfillRange
from schemas.v1.schedules import Schedule
from schemas.v1.statuses import ALLOWED_FROM
from timetable.backfill import BackfillRefused, backfill_occurrences

_SCHEDULE: TypeAdapter[Schedule] = TypeAdapter(Schedule)


class BackfillAccepted(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: UUID
    action: Literal["backfill"] = "backfill"
    # The occurrences the range holds; those that already have an execution do not run again.
    occurrences: int
    status: Literal["accepted"] = "accepted"


async def backfill_job(request: web.Request) -> web.Response:
    body = validate_model(BackfillRange, parse_json(await request.read()))
    job_id = path_job_id(request)
    owner = await owned_job(request, job_id)
    if owner["status"] not in ALLOWED_FROM["backfill"]:
        raise Conflict(f"cannot backfill a job that is {owner['status']}", status=owner["status"])
    await within_daily_runs(request, str(owner["user_id"]))
    schedule = _SCHEDULE.validate_python(owner["schedule"])
    try:
        found = backfill_occurrences(
            schedule, body.from_, body.to, utcnow(), anchor=owner["created_at"]
        )
    except BackfillRefused as exc:
        raise FieldError([(exc.field, exc.message)]) from None
    command = BackfillCommand(
        type="backfill", user_id=str(owner["user_id"]), job_id=job_id, **dict(body)
    )
    await commands.send(request.app[DEPS], command)
    return model_response(BackfillAccepted(job_id=job_id, occurrences=len(found)), status=202)

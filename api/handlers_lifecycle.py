"""Pause, resume, trigger and update: each becomes a command on the tenant's partition.

The API answers 409 for a transition that the job's stored status already rules out. The
owning shard decides for good (a command racing another one is refused there, into
``jobs.dlq``), so a 202 means "accepted for the shard", like a submit.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from aiohttp import web

from api import commands
from api.calendars import check_schedule
from api.deps import DEPS
from api.errors import Conflict
from api.handlers_jobs import owned_job, path_job_id, within_daily_runs, within_payload
from api.models import LifecycleAccepted
from api.validation import parse_json, validate_model
from api.views import model_response
from core.clock import utcnow
from schemas.v1.commands import (
    JobChanges,
    PauseCommand,
    ResumeCommand,
    TriggerCommand,
    UpdateCommand,
)
from schemas.v1.statuses import ALLOWED_FROM

Action = Literal["pause", "resume", "trigger", "update"]


async def apply(
    request: web.Request, action: Action, job_id: UUID, changes: JobChanges | None = None
) -> None:
    """Send ``action``'s command for the job, after the checks the API makes first: the job
    is visible to the credential (else 404), its stored status allows the action (else 409),
    a trigger is within the tenant's runs per day (else 429) and a new target within its
    payload limit (else 413). The owning shard checks again, and decides."""
    owner = await owned_job(request, job_id)
    if owner["status"] not in ALLOWED_FROM[action]:
        raise Conflict(f"cannot {action} a job that is {owner['status']}", status=owner["status"])
    user_id = str(owner["user_id"])
    command: PauseCommand | ResumeCommand | TriggerCommand | UpdateCommand
    if action == "pause":
        command = PauseCommand(type="pause", user_id=user_id, job_id=job_id)
    elif action == "resume":
        command = ResumeCommand(type="resume", user_id=user_id, job_id=job_id)
    elif action == "trigger":
        await within_daily_runs(request, user_id)
        command = TriggerCommand(type="trigger", user_id=user_id, job_id=job_id)
    else:
        if changes is None:
            raise ValueError("an update needs its changes")
        if changes.target is not None:
            within_payload(request, user_id, changes.target)
        if changes.schedule is not None:
            await check_schedule(request, user_id, changes.schedule, utcnow())
        command = UpdateCommand(type="update", user_id=user_id, job_id=job_id, changes=changes)
    await commands.send(request.app[DEPS], command)


async def _accepted(request: web.Request, action: Action) -> web.Response:
    job_id = path_job_id(request)
    await apply(request, action, job_id)
    return model_response(LifecycleAccepted(job_id=job_id, action=action), status=202)


async def pause_job(request: web.Request) -> web.Response:
    return await _accepted(request, "pause")


async def resume_job(request: web.Request) -> web.Response:
    return await _accepted(request, "resume")


async def trigger_job(request: web.Request) -> web.Response:
    return await _accepted(request, "trigger")


async def update_job(request: web.Request) -> web.Response:
    changes = validate_model(JobChanges, parse_json(await request.read()))
    job_id = path_job_id(request)
    await apply(request, "update", job_id, changes)
    return model_response(LifecycleAccepted(job_id=job_id, action="update"), status=202)

"""Pause, resume, trigger and update: each becomes a command on the tenant's partition.

The API answers 409 for a transition that the job's stored status already rules out. The
owning shard decides for good (a command racing another one is refused there, into
``jobs.dlq``), so a 202 means "accepted for the shard", like a submit.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from aiohttp import web

from api import commands, queries
from api.deps import DEPS
from api.errors import Conflict, NotFound
from api.handlers_jobs import (
    _JOB_NOT_FOUND,
    _job_id,
    _visible,
    within_daily_runs,
    within_payload,
)
from api.models import LifecycleAccepted
from api.validation import parse_json, validate_model
from api.views import model_response
from schemas.v1.commands import (
    JobChanges,
    PauseCommand,
    ResumeCommand,
    TriggerCommand,
    UpdateCommand,
)
from schemas.v1.statuses import ALLOWED_FROM

Action = Literal["pause", "resume", "trigger", "update"]


async def _owned_job(request: web.Request, action: Action) -> tuple[UUID, str]:
    job_id = _job_id(request)
    owner = await queries.job_owner(request.app[DEPS].pool, job_id)
    if owner is None:
        raise NotFound(_JOB_NOT_FOUND)
    await _visible(request, owner["user_id"])
    if owner["status"] not in ALLOWED_FROM[action]:
        raise Conflict(f"cannot {action} a job that is {owner['status']}", status=owner["status"])
    return job_id, str(owner["user_id"])


async def _accepted(request: web.Request, action: Action, job_id: UUID) -> web.Response:
    return model_response(LifecycleAccepted(job_id=job_id, action=action), status=202)


async def pause_job(request: web.Request) -> web.Response:
    job_id, user_id = await _owned_job(request, "pause")
    await commands.send(
        request.app[DEPS], PauseCommand(type="pause", user_id=user_id, job_id=job_id)
    )
    return await _accepted(request, "pause", job_id)


async def resume_job(request: web.Request) -> web.Response:
    job_id, user_id = await _owned_job(request, "resume")
    await commands.send(
        request.app[DEPS], ResumeCommand(type="resume", user_id=user_id, job_id=job_id)
    )
    return await _accepted(request, "resume", job_id)


async def trigger_job(request: web.Request) -> web.Response:
    job_id, user_id = await _owned_job(request, "trigger")
    await within_daily_runs(request, user_id)
    await commands.send(
        request.app[DEPS], TriggerCommand(type="trigger", user_id=user_id, job_id=job_id)
    )
    return await _accepted(request, "trigger", job_id)


async def update_job(request: web.Request) -> web.Response:
    changes = validate_model(JobChanges, parse_json(await request.read()))
    job_id, user_id = await _owned_job(request, "update")
    if changes.target is not None:
        within_payload(request, user_id, changes.target)
    await commands.send(
        request.app[DEPS],
        UpdateCommand(type="update", user_id=user_id, job_id=job_id, changes=changes),
    )
    return await _accepted(request, "update", job_id)

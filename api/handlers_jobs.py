"""The /v1/jobs handlers: submit and cancel become commands, reads come from Postgres."""

from __future__ import annotations

import time
from uuid import UUID

import asyncpg
from aiohttp import web
from pydantic import BaseModel

from api import commands, queries
from api.calendars import check_schedule
from api.deps import DEPS, QUOTAS
from api.errors import Conflict, NotFound, TooLarge, TooManyRequests
from api.metrics import METRICS
from api.models import (
    CancelAccepted,
    ExecutionPage,
    JobPage,
    ListExecutionsQuery,
    ListJobsQuery,
    SubmitAccepted,
)
from api.tenancy import TenantDenied, resolve_tenant
from api.validation import parse_submission, validate_model
from api.views import execution_view, job_view, model_response, next_cursor
from core.clock import utcnow
from core.db import StoreUnavailable
from core.quotas import PayloadTooLarge, QuotaExceeded, target_bytes, usage_day
from schemas.v1.commands import CancelCommand
from schemas.v1.statuses import FINISHED_JOB_STATUSES

JOB_NOT_FOUND = "job not found"


def path_job_id(request: web.Request) -> UUID:
    """The path's job id; a malformed one names no job, so it is a 404 like any other."""
    try:
        return UUID(request.match_info["job_id"])
    except ValueError as exc:
        raise NotFound(JOB_NOT_FOUND) from exc


async def ensure_visible(request: web.Request, owner: str) -> None:
    """Another tenant's job is reported as absent, so ids cannot be probed for existence."""
    try:
        await resolve_tenant(request, owner)
    except TenantDenied as exc:
        raise NotFound(JOB_NOT_FOUND) from exc


async def owned_job(request: web.Request, job_id: UUID) -> asyncpg.Record:
    """The job's (user_id, status), if the request's credential may see it; else 404."""
    owner = await queries.job_owner(request.app[DEPS].pool, job_id)
    if owner is None:
        raise NotFound(JOB_NOT_FOUND)
    await ensure_visible(request, owner["user_id"])
    return owner


async def _within_quotas(request: web.Request, user_id: str) -> None:
    """429 + Retry-After past the tenant's limits (the owning shard enforces them again)."""
    quotas = request.app[QUOTAS]
    try:
        cap = quotas.active_cap(user_id)
        if cap is not None:
            try:
                active = await queries.active_jobs(request.app[DEPS].pool, user_id, cap)
            except StoreUnavailable:
                active = 0  # a submit only needs Kafka; the shard counts when it applies it
            quotas.check_active(user_id, active)
        quotas.take_submission(user_id, time.time())
    except QuotaExceeded as exc:
        raise TooManyRequests(f"quota: {exc.reason}", exc.retry_after_header) from None


def within_payload(request: web.Request, user_id: str, target: BaseModel) -> None:
    """413 for a target over the tenant's payload limit (the owning shard checks it again)."""
    try:
        request.app[QUOTAS].check_payload(user_id, target_bytes(target))
    except PayloadTooLarge as exc:
        raise TooLarge(f"target: {exc.reason}") from None


async def within_daily_runs(request: web.Request, user_id: str) -> None:
    """429 + Retry-After (to the next UTC midnight) once today's runs reach the limit."""
    quotas = request.app[QUOTAS]
    if quotas.executions_cap(user_id) is None:
        return
    now = utcnow()
    try:
        used = await queries.executions_today(request.app[DEPS].pool, user_id, usage_day(now))
        quotas.check_executions(user_id, used, now)
    except StoreUnavailable:
        return  # the shard counts when it applies the trigger
    except QuotaExceeded as exc:
        raise TooManyRequests(f"quota: {exc.reason}", exc.retry_after_header) from None


async def submit_job(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    with request.app[METRICS].timing_submit():
        submission = parse_submission(
            await request.read(),
            now=utcnow(),
            grace=deps.past_grace,
            policy=deps.targets,
            reserved_topics=deps.reserved_topics,
        )
        # Left out, the tenant is the credential's; named, the credential must cover it.
        spec = submission.for_tenant(await resolve_tenant(request, submission.user_id))
        within_payload(request, spec.user_id, spec.target)
        await check_schedule(request, spec.user_id, spec.schedule, utcnow())
        await _within_quotas(request, spec.user_id)
        job_id = commands.job_id_for(spec)
        await commands.send(deps, commands.create_command(spec, job_id))
        return model_response(
            SubmitAccepted(job_id=job_id), status=202, Location=f"/v1/jobs/{job_id}"
        )


async def read_job(request: web.Request, job_id: UUID) -> asyncpg.Record:
    """The job's row (``queries.get_job``), if the request's credential may see it; else 404."""
    row = await queries.get_job(request.app[DEPS].pool, job_id)
    if row is None:
        raise NotFound(JOB_NOT_FOUND)
    await ensure_visible(request, row["user_id"])
    return row


async def get_job(request: web.Request) -> web.Response:
    return model_response(job_view(await read_job(request, path_job_id(request))))


async def cancel(request: web.Request, job_id: UUID) -> None:
    """Send the job's cancel command: 404 for a job the credential may not see, 409 once it
    finished."""
    owner = await owned_job(request, job_id)
    if owner["status"] in FINISHED_JOB_STATUSES:
        raise Conflict("job already finished", status=owner["status"])
    await commands.send(
        request.app[DEPS], CancelCommand(type="cancel", user_id=owner["user_id"], job_id=job_id)
    )


async def cancel_job(request: web.Request) -> web.Response:
    job_id = path_job_id(request)
    await cancel(request, job_id)
    return model_response(CancelAccepted(job_id=job_id), status=202)


async def list_jobs(request: web.Request) -> web.Response:
    query = validate_model(ListJobsQuery, dict(request.query))
    tenant = await resolve_tenant(request, query.user_id)
    rows = await queries.list_jobs(
        request.app[DEPS].pool,
        tenant,
        queries.JobFilter(status=query.status),
        query.after,
        query.limit + 1,
    )
    page = JobPage(
        jobs=[job_view(row) for row in rows[: query.limit]],
        next_cursor=next_cursor(rows, query.limit, "job_id"),
    )
    return model_response(page)


async def list_executions(request: web.Request) -> web.Response:
    job_id = path_job_id(request)
    query = validate_model(ListExecutionsQuery, dict(request.query))
    await owned_job(request, job_id)
    rows = await queries.list_executions(
        request.app[DEPS].pool, job_id, query.after, query.limit + 1
    )
    page = ExecutionPage(
        executions=[execution_view(row) for row in rows[: query.limit]],
        next_cursor=next_cursor(rows, query.limit, "execution_id"),
    )
    return model_response(page)

"""The job list, a job's page, and the actions on a job.

Reads and actions go through the API's own functions with the console's request (which
carries the session's principal where the API's tenancy looks for it): ``read_job`` and the
listing answer only what the credential may see, and ``apply``/``cancel`` make the API's
checks (the job is visible, its status allows the action, the tenant's quotas) and send the
same command. A refusal shows the API's reason on the job's page, with the API's status.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, get_args
from urllib.parse import urlencode
from uuid import UUID

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from api import queries
from api.cursor import FIRST_PAGE, Cursor, InvalidCursor, decode_cursor
from api.deps import DEPS
from api.errors import ApiError, FieldError, NotFound
from api.handlers_jobs import cancel, path_job_id, read_job
from api.handlers_lifecycle import apply
from api.models import JobView
from api.tenancy import resolve_tenant
from api.views import job_view, next_cursor
from console.forms import CsrfForm, FormError, JobFilters, PageQuery, ScheduleForm, parse
from console.guard import Handler, acting_tenant
from console.render import render
from console.sessions import PATH
from console.views import Fire, coming_fires, fire_rows, run_row, zone_of
from schemas.v1.commands import JobChanges
from schemas.v1.jobs import Priority
from schemas.v1.schedules import CronSchedule, IntervalSchedule, OnceSchedule, Schedule
from schemas.v1.statuses import ShownJobStatus as JobStatus
from timetable.preview import preview

JOBS_PER_PAGE = 50
RUNS_PER_PAGE = 20
SCHEDULE: TypeAdapter[OnceSchedule | CronSchedule | IntervalSchedule] = TypeAdapter(Schedule)

# What the notice after an action says (the query string picks one; it never carries text).
DONE = {
    "trigger": "Trigger sent: the job runs once more in a moment.",
    "pause": "Pause sent: the shard applies it in a moment.",
    "resume": "Resume sent: the shard applies it in a moment.",
    "cancel": "Cancel sent: the shard applies it in a moment.",
    "schedule": "New schedule sent: the shard applies it in a moment.",
    "replay": "Replay sent: the job runs again in a moment.",
}
ButtonAction = Literal["trigger", "pause", "resume", "cancel"]


def _cursor(text: str | None) -> Cursor:
    if text is None:
        return FIRST_PAGE
    try:
        return decode_cursor(text)
    except InvalidCursor as exc:
        raise FieldError([("cursor", str(exc))]) from None


async def jobs_page(request: web.Request) -> web.Response:
    tenant = await resolve_tenant(request, acting_tenant(request))
    try:
        filters = parse(JobFilters, request.query)
    except FormError as exc:
        raise FieldError(exc.errors) from None
    wanted = queries.JobFilter(filters.status, filters.priority, filters.kind, filters.q)
    rows = await queries.list_jobs(
        request.app[DEPS].pool, tenant, wanted, _cursor(filters.cursor), JOBS_PER_PAGE + 1
    )
    jobs = [job_view(row) for row in rows[:JOBS_PER_PAGE]]
    return render(
        request,
        "jobs.html",
        jobs=jobs,
        filters=filters,
        filtered=wanted != queries.JobFilter(),
        first_query=_query(filters),
        next_query=_query(filters, cursor=next_cursor(rows, JOBS_PER_PAGE, "job_id")),
        notice=DONE.get(filters.said or ""),
        statuses=get_args(JobStatus),
        lanes=get_args(Priority),
    )


def _query(filters: JobFilters, **changes: str | None) -> str | None:
    """The list's query string with ``changes``; None when a change is None (no such page)."""
    if any(v is None for v in changes.values()):
        return None
    fields = {**filters.model_dump(exclude={"said", "cursor"}), **changes}
    return urlencode({k: v for k, v in fields.items() if v is not None})


async def job_page(request: web.Request) -> web.Response:
    try:
        page = parse(PageQuery, request.query)
    except FormError as exc:
        raise FieldError(exc.errors) from None
    return await _job_response(
        request, path_job_id(request), cursor=page.cursor, notice=DONE.get(page.said or "")
    )


async def _job_response(
    request: web.Request,
    job_id: UUID,
    *,
    status: int = 200,
    cursor: str | None = None,
    notice: str | None = None,
    error: str | None = None,
    form: Mapping[str, Any] | None = None,
    previewed: list[Fire] | None = None,
    form_error: str | None = None,
) -> web.Response:
    """The job's page: spec, coming fire times, runs, actions (and the schedule editor)."""
    job = job_view(await read_job(request, job_id))
    rows = await queries.list_executions(
        request.app[DEPS].pool, job_id, _cursor(cursor), RUNS_PER_PAGE + 1
    )
    now = datetime.now(UTC)
    return render(
        request,
        "job.html",
        status=status,
        job=job,
        zone=zone_of(job.schedule),
        fires=coming_fires(job, now),
        runs=[run_row(row) for row in rows[:RUNS_PER_PAGE]],
        next_runs=next_cursor(rows, RUNS_PER_PAGE, "execution_id"),
        notice=notice,
        error=error,
        form=form if form is not None else schedule_form(job),
        previewed=previewed,
        form_error=form_error,
        spec=job.model_dump(mode="json", include={"schedule", "target", "priority", "retry"}),
    )


def button(action: ButtonAction) -> Handler:
    """The handler of one of the job page's buttons."""

    async def act(request: web.Request) -> web.StreamResponse:
        job_id = path_job_id(request)
        try:
            parse(CsrfForm, await request.post())  # the token alone (checked by the guard)
        except FormError as exc:
            raise FieldError(exc.errors) from None
        try:
            if action == "cancel":
                await cancel(request, job_id)
            else:
                await apply(request, action, job_id)
        except NotFound:
            raise
        except ApiError as exc:
            return await _job_response(request, job_id, status=exc.status, error=exc.message)
        raise web.HTTPSeeOther(f"{PATH}jobs/{job_id}?said={action}")

    act.__name__ = f"{action}_job"
    return act


async def preview_schedule(request: web.Request) -> web.Response:
    """The schedule editor's preview: the next fire times of the edited schedule."""
    job_id = path_job_id(request)
    job = job_view(await read_job(request, job_id))
    form = dict(await request.post())
    try:
        schedule = edited_schedule(job, parse(ScheduleForm, await request.post()))
    except FormError as exc:
        return await _job_response(request, job_id, status=422, form=form, form_error=str(exc))
    entries = preview(schedule, datetime.now(UTC), 10, _anchor(job, schedule))
    return await _job_response(request, job_id, form=form, previewed=fire_rows(entries))


async def save_schedule(request: web.Request) -> web.StreamResponse:
    job_id = path_job_id(request)
    job = job_view(await read_job(request, job_id))
    form = dict(await request.post())
    try:
        schedule = edited_schedule(job, parse(ScheduleForm, await request.post()))
        await apply(request, "update", job_id, JobChanges(schedule=schedule))
    except FormError as exc:
        return await _job_response(request, job_id, status=422, form=form, form_error=str(exc))
    except NotFound:
        raise
    except ApiError as exc:
        return await _job_response(request, job_id, status=exc.status, form=form, error=exc.message)
    raise web.HTTPSeeOther(f"{PATH}jobs/{job_id}?said=schedule")


def edited_schedule(
    job: JobView, form: ScheduleForm
) -> OnceSchedule | CronSchedule | IntervalSchedule:
    """The job's schedule with the form's changes. Kept from the current schedule when the
    type stays: its bounds and policies (catch-up, overlap, DST, jitter), which the editor
    does not show."""
    zone_error = form.zone_error()
    if zone_error is not None:
        raise FormError([("timezone", zone_error)])
    current = job.schedule.model_dump()
    base = current if current["type"] == form.type else {}
    try:
        return SCHEDULE.validate_python({**base, **form.schedule_fields()})
    except ValidationError as exc:
        raise FormError(
            [
                (".".join(str(p) for p in e["loc"][1:]) or "schedule", e["msg"])
                for e in exc.errors(include_url=False)
            ]
        ) from None


def _anchor(
    job: JobView, schedule: OnceSchedule | CronSchedule | IntervalSchedule
) -> datetime | None:
    if isinstance(schedule, IntervalSchedule):
        return schedule.start_at or job.created_at
    return None


def schedule_form(job: JobView) -> dict[str, Any]:
    """The editor's fields, filled with the job's schedule."""
    s = job.schedule
    fields: dict[str, Any] = {"type": s.type, "timezone": zone_of(s)}
    if isinstance(s, CronSchedule):
        fields["expression"] = s.expression
    elif isinstance(s, IntervalSchedule):
        fields["every_seconds"] = f"{s.every_seconds:g}"
    else:
        fields["at"] = s.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return fields


ACTIONS: dict[ButtonAction, Handler] = {
    action: button(action) for action in ("trigger", "pause", "resume", "cancel")
}

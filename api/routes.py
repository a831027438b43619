"""Every route of contract v1, with what it answers."""

from __future__ import annotations

import dataclasses

from api import handlers_backfill as backfill
from api import handlers_calendars as calendars
from api import handlers_executions as executions
from api import handlers_jobs as jobs
from api import handlers_lifecycle as lifecycle
from api import handlers_ops as ops
from api import handlers_schedules as schedules
from api.models import (
    CancelAccepted,
    ConflictBody,
    ErrorBody,
    ExecutionDetail,
    ExecutionPage,
    FieldErrorsBody,
    HealthBody,
    JobPage,
    JobView,
    LifecycleAccepted,
    ListExecutionsQuery,
    ListJobsQuery,
    ReadinessBody,
    SubmitAccepted,
)
from api.routing import Reply, Route
from schemas.v1.commands import BackfillRange, JobChanges
from schemas.v1.jobs import JobSubmission

_NOT_FOUND = Reply("No such job (also for a malformed id).", ErrorBody)
_BAD_REQUEST = Reply("Field errors, each naming the field.", FieldErrorsBody)
_FORBIDDEN = Reply(
    "The credential does not act for this user_id; the message names the tenants it acts for.",
    ErrorBody,
)
_TOO_LARGE = Reply("The body, or the job's target, is larger than the limit.", ErrorBody)
_DAILY_QUOTA = Reply(
    "The tenant's executions per day are used up; Retry-After runs to the next UTC midnight.",
    ErrorBody,
    headers=("Retry-After",),
)
_UNAVAILABLE = Reply(
    "Kafka or Postgres is unavailable; retry after the given delay.",
    ErrorBody,
    headers=("Retry-After",),
)

_ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/jobs",
        jobs.submit_job,
        "Submit a job; answered once Kafka acknowledged the create command.",
        {
            202: Reply("Accepted; the job is created asynchronously.", SubmitAccepted),
            403: _FORBIDDEN,
            413: _TOO_LARGE,
            422: _BAD_REQUEST,
            429: Reply(
                "A quota of the tenant is used up (active jobs or submissions per second).",
                ErrorBody,
                headers=("Retry-After",),
            ),
            503: _UNAVAILABLE,
        },
        body=JobSubmission,
        tags=("jobs",),
    ),
    Route(
        "GET",
        "/v1/jobs",
        jobs.list_jobs,
        "List a tenant's jobs, newest first, with cursor pagination.",
        {
            200: Reply("A page of jobs.", JobPage),
            403: _FORBIDDEN,
            422: _BAD_REQUEST,
            503: _UNAVAILABLE,
        },
        query=ListJobsQuery,
        tags=("jobs",),
    ),
    Route(
        "GET",
        "/v1/jobs/{job_id}",
        jobs.get_job,
        "A job's status, next run, last execution and spec.",
        {200: Reply("The job.", JobView), 404: _NOT_FOUND, 503: _UNAVAILABLE},
        tags=("jobs",),
    ),
    Route(
        "DELETE",
        "/v1/jobs/{job_id}",
        jobs.cancel_job,
        "Cancel a job; answered once Kafka acknowledged the cancel command.",
        {
            202: Reply("The cancel command is accepted.", CancelAccepted),
            404: _NOT_FOUND,
            409: Reply("The job already finished.", ConflictBody),
            503: _UNAVAILABLE,
        },
        tags=("jobs",),
    ),
    *(
        Route(
            "POST",
            f"/v1/jobs/{{job_id}}/{action}",
            handler,
            summary,
            {
                202: Reply("Accepted; the owning shard applies it.", LifecycleAccepted),
                404: _NOT_FOUND,
                409: Reply("Illegal for the job's status.", ConflictBody),
                # Only trigger spends a quota (executions per day); pause and resume never 429.
                **({429: _DAILY_QUOTA} if action == "trigger" else {}),
                503: _UNAVAILABLE,
            },
            tags=("jobs",),
        )
        for action, handler, summary in (
            ("pause", lifecycle.pause_job, "Pause a scheduled job."),
            ("resume", lifecycle.resume_job, "Resume a paused job."),
            ("trigger", lifecycle.trigger_job, "Run a job once more now (also replays it)."),
        )
    ),
    Route(
        "PATCH",
        "/v1/jobs/{job_id}",
        lifecycle.update_job,
        "Replace a job's name, schedule, target, priority or retry policy.",
        {
            202: Reply("Accepted; the owning shard applies it.", LifecycleAccepted),
            404: _NOT_FOUND,
            409: Reply("Illegal for the job's status.", ConflictBody),
            413: _TOO_LARGE,
            422: _BAD_REQUEST,
            503: _UNAVAILABLE,
        },
        body=JobChanges,
        tags=("jobs",),
    ),
    Route(
        "POST",
        "/v1/jobs/{job_id}/backfill",
        backfill.backfill_job,
        "Run a recurring job's occurrences in a past range [from, to), in order, each once.",
        {
            202: Reply("Accepted; the owning shard runs them.", backfill.BackfillAccepted),
            404: _NOT_FOUND,
            409: Reply("Illegal for the job's status (cancelled).", ConflictBody),
            422: _BAD_REQUEST,
            429: _DAILY_QUOTA,
            503: _UNAVAILABLE,
        },
        body=BackfillRange,
        tags=("jobs",),
    ),
    Route(
        "GET",
        "/v1/jobs/{job_id}/executions",
        jobs.list_executions,
        "A job's attempts, newest first, with cursor pagination.",
        {
            200: Reply("A page of executions.", ExecutionPage),
            404: _NOT_FOUND,
            422: _BAD_REQUEST,
            503: _UNAVAILABLE,
        },
        query=ListExecutionsQuery,
        tags=("jobs",),
    ),
    Route(
        "GET",
        "/v1/executions/{execution_id}",
        executions.get_execution,
        "One attempt with its full stored log: times, worker, lease, error, output excerpt.",
        {
            200: Reply("The execution.", ExecutionDetail),
            404: Reply("No such execution (also for a malformed id).", ErrorBody),
            503: _UNAVAILABLE,
        },
        tags=("executions",),
    ),
    Route(
        "POST",
        "/v1/schedules/preview",
        schedules.preview_schedule,
        "The next fire times of a schedule, in UTC and in its zone (DST changes flagged).",
        {
            200: Reply("The fire times.", schedules.PreviewResponse),
            422: _BAD_REQUEST,
        },
        body=schedules.PreviewRequest,
        tags=("schedules",),
    ),
    Route(
        "POST",
        "/v1/calendars",
        calendars.create_calendar,
        "Define a named calendar (dates, cron rules) that jobs exclude with exclude.calendars.",
        {
            201: Reply("The calendar.", calendars.CalendarView),
            409: Reply("The tenant has a calendar of that name.", ErrorBody),
            422: _BAD_REQUEST,
            503: _UNAVAILABLE,
        },
        body=calendars.CalendarSpec,
        tags=("calendars",),
    ),
    Route(
        "GET",
        "/v1/calendars",
        calendars.list_calendars,
        "A tenant's calendars, by name.",
        {
            200: Reply("The calendars.", calendars.CalendarList),
            422: _BAD_REQUEST,
            503: _UNAVAILABLE,
        },
        query=calendars.CalendarQuery,
        tags=("calendars",),
    ),
    Route(
        "GET",
        "/v1/calendars/{name}",
        calendars.get_calendar,
        "One calendar.",
        {
            200: Reply("The calendar.", calendars.CalendarView),
            404: Reply("No such calendar.", ErrorBody),
            503: _UNAVAILABLE,
        },
        query=calendars.CalendarQuery,
        tags=("calendars",),
    ),
    Route(
        "DELETE",
        "/v1/calendars/{name}",
        calendars.delete_calendar,
        "Delete a calendar; the jobs that named it keep the copy of its rules they hold.",
        {
            204: Reply("Deleted."),
            404: Reply("No such calendar.", ErrorBody),
            503: _UNAVAILABLE,
        },
        query=calendars.CalendarQuery,
        tags=("calendars",),
    ),
    Route(
        "GET",
        "/healthz",
        ops.healthz,
        "Liveness: the process serves requests.",
        {200: Reply("Alive.", HealthBody)},
        tags=("operations",),
    ),
    Route(
        "GET",
        "/readyz",
        ops.readyz,
        "Readiness: Postgres answers and a Kafka broker is connected.",
        {
            200: Reply("Ready.", ReadinessBody),
            503: Reply("Not ready.", ReadinessBody, headers=("Retry-After",)),
        },
        tags=("operations",),
    ),
    Route(
        "GET",
        "/metrics",
        ops.metrics,
        "Prometheus metrics.",
        {200: Reply("Text exposition format.", media_type="text/plain")},
        tags=("operations",),
    ),
    Route(
        "GET",
        "/openapi.json",
        ops.openapi,
        "This document.",
        {200: Reply("OpenAPI 3.1 document.")},
        tags=("operations",),
    ),
)

_UNAUTHORIZED = Reply(
    "No credential, an unknown or revoked API key, or a JWT that does not verify.",
    ErrorBody,
    headers=("WWW-Authenticate",),
)
_NO_SCOPE = Reply(
    "The API key or JWT lacks the scope (read for GET, write otherwise) or the tenant.",
    ErrorBody,
)


def _with_auth(route: Route) -> Route:
    """Every /v1/ route needs an API key (``Authorization: Bearer``), so it can answer 401/403."""
    if not route.path.startswith("/v1/"):
        return route
    replies = {401: _UNAUTHORIZED, 403: _NO_SCOPE, **route.replies}
    return dataclasses.replace(route, replies=dict(sorted(replies.items())))


ROUTES: tuple[Route, ...] = tuple(_with_auth(r) for r in _ROUTES)

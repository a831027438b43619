"""``kjs jobs``'s output for people: tables like kubectl's, and summaries. (``--json`` prints
the API's own JSON instead.)"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from api.handlers_schedules import PreviewResponse
from api.models import ExecutionDetail, ExecutionView, JobView
from schemas.v1.jobs import RetryPolicy
from schemas.v1.schedules import CronSchedule, IntervalSchedule, OnceSchedule
from schemas.v1.targets import HttpTarget, KafkaTarget, ScriptTarget, SqlTarget
from timetable.words import relative as in_words
from timetable.words import took

NONE = "-"
# How much of an error a table cell shows (``kjs jobs logs`` shows all of it).
_CELL = 60


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, *rows]
    )


def stamp(at: datetime | None) -> str:
    """A time in UTC, ``2026-12-05 10:00:00Z`` (milliseconds when it has any)."""
    if at is None:
        return NONE
    utc = at.astimezone(UTC)
    spec = "milliseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(sep=" ", timespec=spec) + "Z"


def relative(at: datetime | None, now: datetime) -> str:
    return NONE if at is None else in_words(at, now)


def seconds_text(seconds: float) -> str:
    """An interval as written: ``30s``, ``5m``, ``1h``, ``1.5s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def schedule_text(schedule: OnceSchedule | CronSchedule | IntervalSchedule) -> str:
    if isinstance(schedule, CronSchedule):
        return f'cron "{schedule.expression}" {schedule.timezone}'
    if isinstance(schedule, IntervalSchedule):
        return f"every {seconds_text(schedule.every_seconds)}"
    return f"once {stamp(schedule.at)}"


def target_text(target: HttpTarget | ScriptTarget | SqlTarget | KafkaTarget) -> str:
    if isinstance(target, HttpTarget):
        return f"http {target.method} {target.url}"
    if isinstance(target, KafkaTarget):
        return f"kafka {target.topic}" + (f" key {target.key}" if target.key is not None else "")
    if isinstance(target, ScriptTarget):
        return "script " + " ".join(target.command)
    return f"sql on {target.connection}"


def retry_text(retry: RetryPolicy) -> str:
    if retry.max_attempts == 1:
        return "no retries (1 attempt)"
    return (
        f"up to {retry.max_attempts} attempts, backoff {retry.initial_delay_s:g}s "
        f"to {retry.max_delay_s:g}s"
    )


def _last(execution: ExecutionView | None, now: datetime) -> str:
    if execution is None:
        return NONE
    at = execution.finished_at or execution.started_at or execution.scheduled_for
    return f"{execution.status} {relative(at, now)}"


def jobs_table(jobs: Sequence[JobView], now: datetime) -> str:
    rows = [
        [
            str(job.job_id),
            job.name,
            job.status,
            schedule_text(job.schedule),
            relative(job.next_run_at, now),
            _last(job.last_execution, now),
        ]
        for job in jobs
    ]
    return table(["ID", "NAME", "STATUS", "SCHEDULE", "NEXT RUN", "LAST"], rows)


def _cell(text: str | None) -> str:
    if not text:
        return NONE
    line = " ".join(text.split())
    return line if len(line) <= _CELL else line[: _CELL - 3] + "..."


def _took(execution: ExecutionView) -> str:
    if execution.started_at is None or execution.finished_at is None:
        return NONE
    return took((execution.finished_at - execution.started_at).total_seconds())


def runs_table(executions: Sequence[ExecutionView]) -> str:
    rows = [
        [
            str(e.execution_id),
            stamp(e.scheduled_for),
            str(e.attempt),
            e.lane,
            e.status,
            _took(e),
            NONE if e.http_status is None else str(e.http_status),
            _cell(e.error),
        ]
        for e in executions
    ]
    head = ["EXECUTION", "SCHEDULED FOR", "ATTEMPT", "LANE", "STATUS", "TOOK", "HTTP", "ERROR"]
    return table(head, rows)


def _fields(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in pairs) + 1
    return "\n".join(f"{(name + ':').ljust(width)}  {value}" for name, value in pairs)


def job_summary(job: JobView, now: datetime) -> str:
    next_run = (
        f"{stamp(job.next_run_at)} ({relative(job.next_run_at, now)})" if job.next_run_at else NONE
    )
    pairs = [
        ("job", str(job.job_id)),
        ("name", job.name),
        ("user", job.user_id),
        ("status", job.status),
        ("schedule", schedule_text(job.schedule)),
        ("next run", next_run),
        ("runs", str(job.run_count)),
        ("target", target_text(job.target)),
        ("priority", job.priority),
        ("retry", retry_text(job.retry)),
        ("created", stamp(job.created_at)),
    ]
    if job.idempotency_key is not None:
        pairs.append(("idempotency key", job.idempotency_key))
    if job.concurrency is not None:
        pairs.append(("concurrency", f"{job.concurrency.key}: {job.concurrency.limit} at once"))
    last = job.last_execution
    if last is None:
        pairs.append(("last run", NONE))
    else:
        http = f", http {last.http_status}" if last.http_status is not None else ""
        pairs.append(("last run", f"{last.execution_id} {_last(last, now)}{http}"))
        if last.error:
            pairs.append(("last error", _cell(last.error)))
    return _fields(pairs)


def execution_report(e: ExecutionDetail) -> str:
    """Everything stored about an attempt, its output excerpt last and in full."""
    finished = stamp(e.finished_at)
    if e.finished_at is not None and e.started_at is not None:
        finished += f" (took {_took(e)})"
    pairs = [
        ("execution", str(e.execution_id)),
        ("job", str(e.job_id)),
        ("user", e.user_id),
        ("status", e.status),
        ("attempt", str(e.attempt)),
        ("lane", e.lane),
        ("worker", e.worker or NONE),
        ("scheduled for", stamp(e.scheduled_for)),
        ("due", stamp(e.due_at)),
        ("dispatched", stamp(e.dispatched_at)),
        ("started", stamp(e.started_at)),
        ("finished", finished),
        ("lease until", stamp(e.lease_until)),
        ("http status", NONE if e.http_status is None else str(e.http_status)),
        ("error", e.error or NONE),
    ]
    output = e.output_excerpt
    tail = "(no output)" if not output else output.rstrip("\n")
    return _fields(pairs) + "\n--- output excerpt ---\n" + tail


def preview_table(preview: PreviewResponse, description: str) -> str:
    rows = []
    for i, fire in enumerate(preview.fires, 1):
        spec = "milliseconds" if fire.local.microsecond else "seconds"
        local = fire.local.replace(tzinfo=None).isoformat(sep=" ", timespec=spec)
        notes = []
        if fire.shifted:
            notes.append(f"shifted from {fire.nominal:%H:%M:%S} (DST gap)")
        if fire.fold:
            notes.append("second pass of a repeated hour (DST fold)")
        if fire.excluded:
            notes.append(fire.excluded)
        rows.append([str(i), f"{local} {fire.offset}", stamp(fire.utc), "; ".join(notes)])
    head = ["#", f"LOCAL ({preview.timezone})", "UTC", "NOTE"]
    shown = f"next {len(preview.fires)} fire time(s) of {description}"
    if not rows:
        return f"{description}: no fire times ahead"
    return shown + "\n" + table(head, rows)

"""What the pages show, computed from the API's own views (``api.views``): outcomes, lateness
and durations of runs, and fire times with their daylight-saving changes marked."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from api.handlers_lifecycle import ALLOWED_FROM
from api.models import ExecutionView, JobView
from api.views import execution_view
from schemas.v1.schedules import CronSchedule, IntervalSchedule, OnceSchedule
from schemas.v1.statuses import FINISHED_JOB_STATUSES as FINISHED
from schemas.v1.targets import HttpTarget, KafkaTarget, ScriptTarget, SqlTarget
from timetable.preview import PreviewEntry, preview
from timetable.wallclock import format_offset
from timetable.words import took

NONE = "-"
# Fire times the job page lists.
FIRES_SHOWN = 10


def result_code(e: ExecutionView | None) -> str:
    """``HTTP 200``, ``exit 1`` (a script's, from its output excerpt), or ``-``."""
    if e is None:
        return NONE
    if e.http_status is not None:
        return f"HTTP {e.http_status}"
    code = exit_code(e.output_excerpt)
    return NONE if code is None else f"exit {code}"


def exit_code(excerpt: str | None) -> int | None:
    """A script's exit code: its excerpt is JSON with ``exit_code`` (workers.targets.capture)."""
    if not excerpt or not excerpt.startswith("{"):
        return None
    try:
        value = json.loads(excerpt)
    except ValueError:
        return None
    code = value.get("exit_code") if isinstance(value, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def outcome(e: ExecutionView | None) -> str:
    """A run's status with its code: ``succeeded, HTTP 200``."""
    if e is None:
        return "never ran"
    code = result_code(e)
    return e.status if code == NONE else f"{e.status}, {code}"


@dataclass(frozen=True)
class Run:
    """One execution as the job page lists it."""

    e: ExecutionView
    # When it was due to start: its occurrence, or the end of a retry's backoff.
    due: datetime
    lateness: str
    duration: str
    code: str


def run_row(row: Mapping[str, Any]) -> Run:
    e = execution_view(row)
    due_at = row.get("due_at")
    due = max(e.scheduled_for, due_at) if due_at is not None else e.scheduled_for
    lateness = NONE if e.started_at is None else took(max(0.0, _seconds(e.started_at - due)))
    duration = NONE
    if e.started_at is not None and e.finished_at is not None:
        duration = took(max(0.0, _seconds(e.finished_at - e.started_at)))
    return Run(e, due, lateness, duration, result_code(e))


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


@dataclass(frozen=True)
class Fire:
    """A coming fire time, on the job's wall clock and in UTC, with what DST does to it."""

    utc: datetime
    local: datetime
    offset: str
    note: str


def fire_rows(entries: Sequence[PreviewEntry], offset_before: str | None = None) -> list[Fire]:
    """The preview's entries, each noting a daylight-saving change: a run moved out of a gap,
    the second pass of a repeated hour, and the first run after the zone's offset changed."""
    rows = []
    previous = offset_before
    for entry in entries:
        notes = []
        if previous is not None and entry["offset"] != previous:
            notes.append(f"DST: clocks change, {previous} -> {entry['offset']}")
        if entry["shifted"]:
            notes.append(f"{entry['nominal']:%H:%M:%S} does not exist that day (DST gap): moved")
        if entry["fold"]:
            notes.append("the repeated hour's second pass (DST)")
        rows.append(Fire(entry["utc"], entry["local"], entry["offset"], "; ".join(notes)))
        previous = entry["offset"]
    return rows


def coming_fires(job: JobView, now: datetime, count: int = FIRES_SHOWN) -> list[Fire]:
    """The job's next fire times, from its stored next run on (none once it is finished)."""
    if job.next_run_at is None:
        return []
    schedule = job.schedule
    if not isinstance(schedule, OnceSchedule) and schedule.max_runs is not None:
        count = min(count, schedule.max_runs - job.run_count)
    if count <= 0:
        return []
    # The stored next run is the first: a preview lists fire times strictly after its start.
    start = job.next_run_at - timedelta(microseconds=1)
    anchor = None
    if isinstance(schedule, IntervalSchedule):
        # An interval is anchored at start_at, else at the job's creation (as the shard has it).
        anchor = schedule.start_at or job.created_at
    entries = preview(schedule, start, count, anchor)
    return fire_rows(entries, _offset_at(schedule, min(now, job.next_run_at)))


def _offset_at(schedule: OnceSchedule | CronSchedule | IntervalSchedule, at: datetime) -> str:
    zone = ZoneInfo(schedule.timezone) if isinstance(schedule, CronSchedule) else UTC
    offset = at.astimezone(zone).utcoffset()
    assert offset is not None
    return format_offset(offset)


def allowed(action: str, shown_status: str) -> bool:
    """Whether the job page offers ``action``: the API's own rules (``ALLOWED_FROM``, and a
    cancel until the job finished). A running job is stored as queued."""
    stored = "queued" if shown_status == "running" else shown_status
    if action == "cancel":
        return stored not in FINISHED
    starts = {str(name): statuses for name, statuses in ALLOWED_FROM.items()}.get(action)
    return starts is not None and stored in starts


def target_words(target: HttpTarget | KafkaTarget | ScriptTarget | SqlTarget) -> str:
    if isinstance(target, HttpTarget):
        return f"HTTP {target.method} {target.url}"
    if isinstance(target, KafkaTarget):
        return f"Kafka topic {target.topic}"
    if isinstance(target, ScriptTarget):
        return "script: " + " ".join(target.command)
    return f"SQL on connection {target.connection}"


def stamp(seconds: float) -> str:
    """A Unix time as ``2026-12-05 10:00:00.123 UTC``."""
    at = datetime.fromtimestamp(seconds, UTC)
    return at.replace(tzinfo=None).isoformat(sep=" ", timespec="milliseconds") + " UTC"


def zone_of(schedule: OnceSchedule | CronSchedule | IntervalSchedule) -> str:
    return schedule.timezone if isinstance(schedule, CronSchedule) else "UTC"

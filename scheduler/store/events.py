"""State-change events into the outbox (``kjs_event_outbox``), inside the change's own fenced
transaction: an event commits if and only if its change does (docs/events.md).

Each store function that changes a job or an execution calls one of these after its
statement, with the ids it changed. They select only the rows this transaction wrote
(``xmin`` is the transaction's id), so a no-op (a redelivered result, an occurrence stored
before) has no event. A row written inside a savepoint carries the savepoint's id and would
be missed: the fenced transaction has none, and must not get one without changing this.
Off (``KJS_EVENTS``, the default) each call is a check of :data:`SWITCH` and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from core.queries import QUERIES
from core.secrets import redact_target
from schemas.v1.state_events import ExecutionEventType, JobEventType, JobState


class Switch:
    """Whether this process writes events; set once at start-up from ``KJS_EVENTS`` (it is
    per installation, so one value per process), and by tests."""

    on: bool = False


SWITCH = Switch()


async def execution_events(
    conn: asyncpg.Connection,
    execution_ids: Sequence[UUID],
    type: ExecutionEventType | None = None,
) -> None:
    """An event for each of ``execution_ids`` this transaction wrote: ``type``, or by
    default ``execution.<its status>``."""
    if SWITCH.on and execution_ids:
        await conn.execute(QUERIES["insert_execution_events"], type, list(execution_ids))


async def job_execution_events(
    conn: asyncpg.Connection, job_ids: Sequence[UUID], status: str
) -> None:
    """An ``execution.<status>`` event for each execution of ``job_ids`` this transaction
    moved to ``status`` (a change that names jobs: cancel, pause, fire)."""
    if SWITCH.on and job_ids:
        await conn.execute(QUERIES["insert_job_execution_events"], None, list(job_ids), status)


async def job_events(
    conn: asyncpg.Connection,
    type: JobEventType,
    job_ids: Sequence[UUID],
    statuses: Sequence[str] | None = None,
) -> None:
    """A ``type`` event for each of ``job_ids`` this transaction wrote (in one of
    ``statuses``, if given), carrying the job as the API shows it: secrets redacted."""
    if not (SWITCH.on and job_ids):
        return
    rows = await conn.fetch(
        QUERIES["changed_jobs"], list(job_ids), None if statuses is None else list(statuses)
    )
    if rows:
        await conn.execute(
            QUERIES["insert_events"],
            [r["shard"] for r in rows],
            [r["job_id"] for r in rows],
            [_job_event(type, r) for r in rows],
        )


def _job_event(type: JobEventType, row: asyncpg.Record) -> dict[str, Any]:
    job = JobState(
        name=row["name"],
        status=row["status"],
        schedule=row["schedule"],
        target=redact_target(row["target"]),
        priority=row["priority"],
        retry=row["retry"],
        next_run_at=row["next_run_at"],
    )
    return {
        "type": type,
        "job_id": str(row["job_id"]),
        "user_id": row["user_id"],
        "job": job.model_dump(mode="json"),
    }


def job_change(before: str, after: str) -> JobEventType:
    """The event of a lifecycle change from status ``before`` to ``after``."""
    if after == "paused" and before != "paused":
        return "job.paused"
    if before == "paused" and after != "paused":
        return "job.resumed"
    return "job.updated"

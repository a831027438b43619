"""The words of the state machines: job statuses, execution statuses and lanes, spelled once.

The store's CHECK constraints (``schemas/sql/schema.sql``) list the same words, and the SQL of
``schemas/sql/queries.sql`` uses no other (tests/integration/test_statuses.py checks both,
against the live catalog of a migrated database); the API's models, the scheduler and the
workers take them from here.
"""

from __future__ import annotations

from typing import Literal, get_args

# A job waiting for its next occurrence (recurring jobs stay here), paused, or a one-time
# job whose execution is out: it still counts against the active-jobs quota.
ActiveJobStatus = Literal["scheduled", "paused", "queued"]
# A job that is done: a one-time job's outcome, or a cancel.
FinishedJobStatus = Literal["succeeded", "failed", "cancelled"]
# A job's status as stored (kjs_jobs.status).
JobStatus = Literal[ActiveJobStatus, FinishedJobStatus]
# A job's status as the API shows it: a queued job whose latest execution runs is "running".
ShownJobStatus = Literal[ActiveJobStatus, "running", FinishedJobStatus]

# An execution not finished: a pending run waiting for its due_at (a retry, a triggered run,
# a buffered run), queued for a worker, or running.
UnfinishedExecutionStatus = Literal["pending", "queued", "running"]
# An execution that is done; it has a finished_at exactly then. "skipped" records an
# occurrence that did not run, with the reason.
FinishedExecutionStatus = Literal["succeeded", "failed", "cancelled", "skipped"]
# An execution's status (kjs_executions.status).
ExecutionStatus = Literal[UnfinishedExecutionStatus, FinishedExecutionStatus]

# A job's priority is the lane (jobs.due.<lane>) its executions go to.
Lane = Literal["critical", "normal", "low"]

# How far a `kjs shards resize` got (kjs_resizes.step, scheduler/resize.py), in order.
ResizeStep = Literal["started", "grown", "moved", "done"]

ACTIVE_JOB_STATUSES: tuple[ActiveJobStatus, ...] = get_args(ActiveJobStatus)
FINISHED_JOB_STATUSES: tuple[FinishedJobStatus, ...] = get_args(FinishedJobStatus)
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
SHOWN_JOB_STATUSES: tuple[ShownJobStatus, ...] = get_args(ShownJobStatus)
UNFINISHED_EXECUTION_STATUSES: tuple[UnfinishedExecutionStatus, ...] = get_args(
    UnfinishedExecutionStatus
)
FINISHED_EXECUTION_STATUSES: tuple[FinishedExecutionStatus, ...] = get_args(FinishedExecutionStatus)
EXECUTION_STATUSES: tuple[ExecutionStatus, ...] = get_args(ExecutionStatus)
LANES: tuple[Lane, ...] = get_args(Lane)
RESIZE_STEPS: tuple[ResizeStep, ...] = get_args(ResizeStep)

# The stored statuses each lifecycle command may start from: the shard's rules
# (scheduler.commands, scheduler.store.lifecycle), which the API checks early (409).
ALLOWED_FROM: dict[str, tuple[JobStatus, ...]] = {
    "cancel": ACTIVE_JOB_STATUSES,
    "pause": ("scheduled",),
    "resume": ("paused",),
    "update": ("scheduled", "paused"),
    "trigger": ("scheduled", "paused", "queued", "succeeded", "failed"),
    "backfill": ("scheduled", "paused", "queued", "succeeded", "failed"),
}

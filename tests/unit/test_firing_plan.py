"""``scheduler.firing.plan``: what firing a due job means, one rule per case.

``plan`` is pure and takes its clock as ``now``. Every case uses an interval job that runs
every minute from ``T`` (``start_at``), so an occurrence is named by its minute after ``T``,
and a case states what runs, what is skipped (and why), and what comes next. Each case
breaks when its rule does: catch-up ``none``/``latest``/``all`` and the misfire grace,
``max_runs``, ``end_at``, the overlap policies, and the recorded-skips cap. Jitter and the
one-time fast path have their own tests below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from scheduler.firing import RECORDED_SKIPS, plan
from scheduler.model import Fired, FiringJob
from schemas.v1.schedules import IntervalSchedule
from timetable.occurrences import jitter_delay

T = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
JOB_ID = UUID("0b7e3c52-5d0a-4f31-9a8e-2f6c1d9e4a70")
MISFIRE = "misfire: missed by more than misfire_grace_s"
NOT_FINISHED = "overlap: the previous run has not finished"
BUFFERED = "overlap: one run is already buffered"
# A grace longer than any case's delay: nothing is a misfire, only the rule under test acts.
NO_MISFIRE = {"misfire_grace_s": 3600}


def minute(m: float) -> datetime:
    return T + m * MINUTE


def every_minute(policy: dict[str, Any], **state: Any) -> FiringJob:
    """A job due at ``T`` (its first occurrence), created an hour before."""
    values: dict[str, Any] = {
        "job_id": JOB_ID,
        "user_id": "u",
        "schedule": {
            "type": "interval",
            "every_seconds": 60,
            "start_at": T.isoformat(),
            **policy,
        },
        "target": {"type": "http", "method": "GET", "url": "https://example.com/"},
        "priority": "normal",
        "next_run_at": T,
        "created_at": T - timedelta(hours=1),
        "run_count": 0,
        "busy": False,
        "buffered_for": None,
    }
    values.update(state)
    return FiringJob(**values)


@dataclass(frozen=True)
class Case:
    policy: dict[str, Any]
    now: float  # minutes after T
    runs: list[int]  # the minutes that run
    next_run: int | None  # the minute of the next run; None: the job has no next run
    skipped: list[tuple[int, str]] = field(default_factory=list)  # recorded skips
    skipped_total: int | None = None  # defaults to len(skipped)
    state: dict[str, Any] = field(default_factory=dict)  # run_count, busy, buffered_for
    cancel_active: bool = False
    buffer: int | None = None  # the minute buffered (overlap = buffer_one)


CASES = {
    # --- catch-up: ten occurrences (minutes 0-9) missed by more than the 30 s grace ----------
    "catchup none skips every misfire and runs the timely one": Case(
        {"catchup": "none", "misfire_grace_s": 30},
        now=10,
        runs=[10],
        next_run=11,
        skipped=[(m, MISFIRE) for m in range(10)],
    ),
    "catchup latest runs the most recent misfire only": Case(
        {"catchup": "latest", "misfire_grace_s": 30},
        now=10,
        runs=[9, 10],
        next_run=11,
        skipped=[(m, MISFIRE) for m in range(9)],
    ),
    "catchup all runs the max_catchup most recent misfires": Case(
        {"catchup": "all", "max_catchup": 3, "misfire_grace_s": 30},
        now=10,
        runs=[7, 8, 9, 10],
        next_run=11,
        skipped=[(m, MISFIRE) for m in range(7)],
    ),
    "occurrences late by no more than the grace are not misfires": Case(
        # Minute 0 is exactly 600 s late: still within misfire_grace_s = 600.
        {"catchup": "none", "misfire_grace_s": 600},
        now=10,
        runs=list(range(11)),
        next_run=11,
    ),
    "catchup latest: an occurrence late by exactly the grace runs once": Case(
        {"catchup": "latest", "misfire_grace_s": 600},
        now=10,
        runs=list(range(11)),
        next_run=11,
    ),
    "only the most recent skips are recorded, every one is counted": Case(
        {"catchup": "none", "misfire_grace_s": 30},
        now=15,
        runs=[15],
        next_run=16,
        skipped=[(m, MISFIRE) for m in range(15 - RECORDED_SKIPS, 15)],
        skipped_total=15,
    ),
    # --- max_runs ------------------------------------------------------------------------------
    "max_runs caps what runs, earliest first, and ends the job": Case(
        {"max_runs": 5, **NO_MISFIRE},
        now=4,
        runs=[0, 1],
        next_run=None,
        state={"run_count": 3},
    ),
    "max_runs reached exactly by this fire ends the job": Case(
        {"max_runs": 5, **NO_MISFIRE},
        now=0,
        runs=[0],
        next_run=None,
        state={"run_count": 4},
    ),
    "max_runs not reached: the job goes on": Case(
        {"max_runs": 5, **NO_MISFIRE},
        now=0,
        runs=[0],
        next_run=1,
        state={"run_count": 3},
    ),
    "max_runs already reached: nothing runs": Case(
        {"max_runs": 5, **NO_MISFIRE},
        now=1,
        runs=[],
        next_run=None,
        state={"run_count": 5},
    ),
    # --- end_at --------------------------------------------------------------------------------
    "nothing after end_at runs, and the job has no next run": Case(
        {"end_at": minute(2).isoformat(), **NO_MISFIRE},
        now=5,
        runs=[0, 1, 2],
        next_run=None,
    ),
    "before end_at the job goes on": Case(
        {"end_at": minute(2).isoformat(), **NO_MISFIRE},
        now=0,
        runs=[0],
        next_run=1,
    ),
    # --- overlap: the previous run has not finished (busy) -------------------------------------
    "overlap allow runs while the previous run is busy": Case(
        {"overlap": "allow", **NO_MISFIRE},
        now=0,
        runs=[0],
        next_run=1,
        state={"busy": True},
    ),
    "overlap forbid skips while the previous run is busy": Case(
        {"overlap": "forbid", **NO_MISFIRE},
        now=1,
        runs=[],
        next_run=2,
        skipped=[(0, NOT_FINISHED), (1, NOT_FINISHED)],
        state={"busy": True},
    ),
    "overlap forbid runs when nothing is busy": Case(
        {"overlap": "forbid", **NO_MISFIRE},
        now=0,
        runs=[0],
        next_run=1,
    ),
    "overlap replace runs and cancels the busy run": Case(
        {"overlap": "replace", **NO_MISFIRE},
        now=0,
        runs=[0],
        next_run=1,
        state={"busy": True},
        cancel_active=True,
    ),
    "overlap replace cancels nothing when nothing is busy": Case(
        {"overlap": "replace", **NO_MISFIRE},
        now=0,
        runs=[0],
        next_run=1,
    ),
    "overlap buffer_one buffers the newest occurrence and skips the others": Case(
        {"overlap": "buffer_one", **NO_MISFIRE},
        now=1,
        runs=[],
        next_run=2,
        skipped=[(0, BUFFERED)],
        state={"busy": True},
        buffer=1,
    ),
    "overlap buffer_one skips when a run is already buffered": Case(
        {"overlap": "buffer_one", **NO_MISFIRE},
        now=0,
        runs=[],
        next_run=1,
        skipped=[(0, BUFFERED)],
        state={"busy": True, "buffered_for": minute(-1)},
    ),
    "overlap buffer_one runs when nothing is busy": Case(
        {"overlap": "buffer_one", **NO_MISFIRE},
        now=0,
        runs=[0],
        next_run=1,
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan(case: Case) -> None:
    fired = plan(every_minute(case.policy, **case.state), now=minute(case.now))

    assert [o.scheduled_for for o in fired.occurrences] == [minute(m) for m in case.runs]
    assert fired.next_run_at == (None if case.next_run is None else minute(case.next_run))
    assert [(s.scheduled_for, s.reason) for s in fired.skipped] == [
        (minute(m), reason) for m, reason in case.skipped
    ]
    total = len(case.skipped) if case.skipped_total is None else case.skipped_total
    assert fired.skipped_total == total
    assert fired.cancel_active is case.cancel_active
    assert fired.buffer == (None if case.buffer is None else minute(case.buffer))
    _check_rows(fired)


def _check_rows(fired: Fired) -> None:
    """What every plan satisfies: first attempts of this job, with no jitter asked for."""
    for occ in fired.occurrences:
        assert (occ.job_id, occ.user_id, occ.attempt, occ.lane) == (JOB_ID, "u", 1, "normal")
        assert occ.due_at is None
    assert fired.next_due == fired.next_run_at


def test_jitter_delays_each_run_and_the_next_one_within_jitter_s() -> None:
    policy = {"jitter_s": 20, **NO_MISFIRE}
    fired = plan(every_minute(policy), now=minute(1))
    schedule = IntervalSchedule.model_validate(every_minute(policy).schedule)

    assert [o.scheduled_for for o in fired.occurrences] == [minute(0), minute(1)]
    delays = []
    for occ in fired.occurrences:
        assert occ.due_at is not None, "a jittered run must carry its start time"
        delay = occ.due_at - occ.scheduled_for
        assert delay == jitter_delay(schedule, JOB_ID, occ.scheduled_for)
        delays.append(delay)
    assert fired.next_run_at == minute(2)
    # The timer fires the next run at its jittered time, not at its nominal one.
    assert fired.next_due == minute(2) + jitter_delay(schedule, JOB_ID, minute(2))
    delays.append(fired.next_due - fired.next_run_at)
    assert all(timedelta(0) < d < timedelta(seconds=20) for d in delays), delays
    # Per occurrence, not one delay for the job: the three differ.
    assert len(set(delays)) == 3, delays
    # A plan computed again (a restarted shard) picks the same delays.
    again = plan(every_minute(policy), now=minute(1))
    assert [o.due_at for o in again.occurrences] == [o.due_at for o in fired.occurrences]


def test_a_one_time_job_runs_once_and_has_no_next_run() -> None:
    job = every_minute({}, schedule={"type": "once", "at": T.isoformat()})
    fired = plan(job, now=T + timedelta(hours=1))  # however late: a one-shot still runs
    assert [o.scheduled_for for o in fired.occurrences] == [T]
    assert fired.next_run_at is None
    assert fired.skipped == [] and fired.skipped_total == 0

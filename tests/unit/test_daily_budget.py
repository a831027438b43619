"""scheduler.daily_budget.ration: which fired runs a tenant's daily budget lets through."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from scheduler.daily_budget import ration
from scheduler.model import Fired, Occurrence, Skip

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 12, 2, tzinfo=UTC)
REASON = "quota: 3 executions per day (UTC) is the limit"


def fired(user_id: str, runs: int, *, recurring: bool = True) -> Fired:
    job_id = uuid.uuid4()
    times = [NOW - timedelta(seconds=runs - i) for i in range(runs)]
    occurrences = [
        Occurrence(uuid.uuid4(), job_id, user_id, 1, at, "normal", {"type": "kafka"})
        for at in times
    ]
    nxt = NOW + timedelta(minutes=1) if recurring else None
    return Fired(job_id, user_id, "normal", occurrences, nxt, next_due=nxt)


def test_unlimited_tenants_pass_untouched_and_are_not_counted() -> None:
    batch = [fired("free", 5), fired("rich", 5)]
    out, spent = ration(batch, {}, {}, NOW)
    assert out == batch
    assert spent == {}


def test_runs_past_the_budget_become_skips_with_the_reason_in_due_order() -> None:
    first, second = fired("u", 2), fired("u", 2)
    out, spent = ration([first, second], {"u": 0}, {"u": 3}, NOW)
    assert out[0] == first
    assert out[1].occurrences == second.occurrences[:1]
    assert out[1].skipped == [Skip(second.occurrences[1].scheduled_for, REASON)]
    assert out[1].skipped_total == 1
    assert out[1].next_run_at == second.next_run_at  # a recurring job goes on
    assert spent == {"u": 3}


def test_what_was_used_earlier_today_counts() -> None:
    out, spent = ration([fired("u", 2)], {"u": 3}, {"u": 3}, NOW)
    assert out[0].occurrences == []
    assert out[0].skipped_total == 2
    assert spent == {}


def test_a_job_with_no_run_after_this_one_is_deferred_to_midnight_not_dropped() -> None:
    once = fired("u", 1, recurring=False)
    out, spent = ration([once], {"u": 3}, {"u": 3}, NOW)
    (deferred,) = out
    assert deferred.occurrences == []
    assert deferred.skipped == []
    assert deferred.next_run_at == MIDNIGHT and deferred.next_due == MIDNIGHT
    assert spent == {}


def test_a_last_run_that_partly_fits_runs_what_fits_and_skips_the_rest() -> None:
    last = fired("u", 3, recurring=False)
    out, spent = ration([last], {"u": 1}, {"u": 3}, NOW)
    assert out[0].occurrences == last.occurrences[:2]
    assert [s.scheduled_for for s in out[0].skipped] == [last.occurrences[2].scheduled_for]
    assert out[0].next_run_at is None
    assert spent == {"u": 2}


def test_tenants_have_budgets_of_their_own() -> None:
    out, spent = ration([fired("a", 3), fired("b", 3)], {"a": 2}, {"a": 3, "b": 3}, NOW)
    assert [len(f.occurrences) for f in out] == [1, 3]
    assert spent == {"a": 1, "b": 3}

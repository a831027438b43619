"""Firing ahead of the instant: how far ahead a job's runs are planned, and which jobs must
be fired close to their instant because their overlap policy asks about the running run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler.firing import fires_close, plan
from scheduler.model import FiringJob

T = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
LEAD = timedelta(seconds=2.5)
CLOSE = timedelta(milliseconds=250)


def every_second(**policy: Any) -> FiringJob:
    return FiringJob(
        job_id=uuid.uuid4(),
        user_id="u",
        schedule={"type": "interval", "every_seconds": 1, **policy},
        target={"type": "http", "method": "GET", "url": "https://example.com/"},
        priority="normal",
        next_run_at=T,
        created_at=T - timedelta(hours=1),
        run_count=0,
        busy=False,
        buffered_for=None,
    )


@pytest.mark.parametrize(
    ("policy", "close"),
    [
        ({}, False),
        ({"overlap": "allow"}, False),
        ({"overlap": "forbid"}, True),
        ({"overlap": "replace"}, True),
        ({"overlap": "buffer_one"}, True),
    ],
)
def test_only_an_overlap_policy_that_looks_at_the_running_run_fires_close(
    policy: dict[str, Any], close: bool
) -> None:
    assert fires_close(every_second(**policy).schedule) is close
    assert fires_close({"type": "once", "at": T.isoformat()}) is False


def test_a_job_that_allows_overlap_plans_every_run_within_the_lead() -> None:
    fired = plan(every_second(), now=T - timedelta(milliseconds=100), lead=LEAD, close_lead=CLOSE)
    assert [o.scheduled_for for o in fired.occurrences] == [
        T + timedelta(seconds=s) for s in (0, 1, 2)
    ]
    assert fired.next_run_at == T + timedelta(seconds=3)
    assert fired.close is False


def test_a_job_that_forbids_overlap_plans_only_its_next_run() -> None:
    """Its next runs are decided when they are about to start, by what is running then."""
    fired = plan(
        every_second(overlap="forbid"),
        now=T - timedelta(milliseconds=100),
        lead=LEAD,
        close_lead=CLOSE,
    )
    assert [o.scheduled_for for o in fired.occurrences] == [T]
    assert fired.next_run_at == T + timedelta(seconds=1)
    assert fired.close is True

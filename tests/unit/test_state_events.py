"""The jobs.events value: a job event carries the job, an execution event the execution."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.v1.state_events import StateEvent

JOB = {
    "name": "n",
    "status": "scheduled",
    "schedule": {"type": "once", "at": "2030-01-01T00:00:00+00:00"},
    "target": {"type": "http", "method": "GET", "url": "https://example.com"},
    "priority": "normal",
    "retry": {},
}
EXECUTION = {
    "execution_id": str(uuid.uuid4()),
    "attempt": 1,
    "scheduled_for": "2030-01-01T00:00:00+00:00",
    "lane": "normal",
    "status": "queued",
}


def event(type: str, **state: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": type,
        "occurred_at": "2030-01-01T00:00:00+00:00",
        "job_id": str(uuid.uuid4()),
        "user_id": "u",
        "shard": 0,
        **state,
    }


def test_each_kind_carries_its_own_state() -> None:
    assert StateEvent.model_validate(event("job.created", job=JOB)).job is not None
    queued = StateEvent.model_validate(event("execution.queued", execution=EXECUTION))
    assert queued.execution is not None


@pytest.mark.parametrize(
    "value",
    [
        event("job.created", execution=EXECUTION),
        event("execution.queued", job=JOB),
        event("job.created"),
        event("execution.queued", job=JOB, execution=EXECUTION),
        event("execution.running", execution=EXECUTION),
    ],
)
def test_an_event_of_the_wrong_shape_is_refused(value: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        StateEvent.model_validate(value)

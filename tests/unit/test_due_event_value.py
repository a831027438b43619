"""The shard writes due events with ``json`` (``scheduler.firing.due_event_value``), not
through the pydantic model: what it writes must be the event the model describes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.firing import due_event_value
from scheduler.model import Occurrence
from schemas.v1.events import DueEvent

T = datetime(2026, 12, 4, 9, 0, 0, 123456, tzinfo=UTC)
TARGETS = [
    {
        "type": "http",
        "method": "POST",
        "url": "https://example.com/hook?a=1",
        "headers": {"Authorization": "kjs-enc:v2:abc", "X-Name": "é ✓"},
        "body": {"nested": [1, 2.5, None, True, "{{secrets.token}}"]},
        "timeout_s": 2.5,
        "success_statuses": [200, 202],
        "secrets": {"token": "kjs-enc:v2:def"},
    },
    {"type": "script", "command": ["/bin/echo", "hi"], "env": {"A": "1"}},
    {"type": "sql", "connection": "main", "statement": "SELECT 1", "params": [1, "x"]},
    {"type": "kafka", "topic": "orders", "key": "k", "value": {"id": 7}},
]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t["type"])
@pytest.mark.parametrize("due_at", [None, T + timedelta(seconds=3)])
def test_the_written_event_is_the_models_event(target: dict[str, object], due_at: object) -> None:
    occ = Occurrence(
        execution_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        user_id="tenant-a",
        attempt=2,
        scheduled_for=T,
        lane="critical",
        target=target,  # type: ignore[arg-type]
        due_at=due_at,  # type: ignore[arg-type]
    )
    expected = DueEvent(
        execution_id=occ.execution_id,
        job_id=occ.job_id,
        user_id=occ.user_id,
        attempt=occ.attempt,
        scheduled_for=occ.scheduled_for,
        lane="critical",
        target=target,  # type: ignore[arg-type]
        shard=5,
        not_before=occ.due_at,
    )

    assert DueEvent.model_validate_json(due_event_value(occ, 5)) == expected

"""The commands the API builds: ids from idempotency keys, and the wire format."""

from __future__ import annotations

from typing import Any

from api.commands import create_command, job_id_for
from schemas.v1.commands import COMMAND, CreateCommand
from schemas.v1.ids import job_id_for_key
from schemas.v1.jobs import JobSpec


def _spec(**changes: Any) -> JobSpec:
    body: dict[str, Any] = {
        "user_id": "alice",
        "name": "ping",
        "schedule": {"type": "interval", "every_seconds": 30},
        "target": {"type": "kafka", "topic": "out", "value": {"n": 1}},
    }
    return JobSpec.model_validate({**body, **changes})


def test_an_idempotency_key_fixes_the_job_id() -> None:
    first = job_id_for(_spec(idempotency_key="k-1"))
    assert first == job_id_for(_spec(idempotency_key="k-1")) == job_id_for_key("alice", "k-1")


def test_the_same_key_of_another_tenant_is_another_job() -> None:
    alice = job_id_for(_spec(idempotency_key="k-1"))
    assert alice != job_id_for(_spec(user_id="bob", idempotency_key="k-1"))


def test_without_a_key_every_submit_is_a_new_job() -> None:
    assert job_id_for(_spec()) != job_id_for(_spec())


def test_the_command_carries_the_chosen_job_id() -> None:
    spec = _spec()
    job_id = job_id_for(spec)
    command = create_command(spec, job_id)
    assert command.job.job_id == job_id
    assert command.user_id == spec.user_id


def test_the_command_round_trips_through_the_wire_schema() -> None:
    spec = _spec(priority="critical")
    command = create_command(spec, job_id_for(spec))
    parsed = COMMAND.validate_json(command.model_dump_json())
    assert isinstance(parsed, CreateCommand)
    assert parsed == command
    assert parsed.job.priority == "critical"

"""Building the commands the API produces, and handing them to the tenant's partition."""

from __future__ import annotations

import logging
from uuid import UUID, uuid4

from api.deps import ApiDeps
from api.errors import ServiceUnavailable
from api.publisher import KafkaUnavailable
from api.traces import command_headers
from schemas.v1.commands import AnyCommand, CreateCommand
from schemas.v1.ids import job_id
from schemas.v1.jobs import JobSpec, SubmittedJob

log = logging.getLogger(__name__)


def job_id_for(spec: JobSpec) -> UUID:
    """The same key always names the same job, so a retried submit cannot create a second."""
    return job_id(spec.user_id, spec.idempotency_key, None, otherwise=uuid4)


def create_command(spec: JobSpec, job_id: UUID) -> CreateCommand:
    return CreateCommand(type="create", job=SubmittedJob(**dict(spec), job_id=job_id))


async def send(deps: ApiDeps, command: AnyCommand) -> None:
    """Produce to ``jobs.commands`` keyed by user_id, the key that picks the tenant's shard,
    with the request's trace context (``api.traces``) as its ``traceparent`` header."""
    try:
        await deps.publisher.publish(
            deps.catalog.commands.name,
            key=command.user_id.encode(),
            value=command.model_dump_json().encode(),
            headers=command_headers(),
        )
    except KafkaUnavailable as exc:
        log.warning("%s command not acknowledged: %s", command.type, exc)
        raise ServiceUnavailable("the command log is unavailable, retry later") from exc

"""Deterministic ids, so that a redelivered or repeated submission maps to the same row.

- A create with an ``idempotency_key`` gets the same job_id from every path (HTTP, Kafka,
  producer retries): the id is derived from (user_id, idempotency_key).
- A create from Kafka with neither ``job_id`` nor key gets an id derived from its
  topic/partition/offset, so a redelivery of that record is still one job.
- An execution id is derived from (job_id, scheduled_for, attempt): firing an occurrence
  twice yields the same id, which the UNIQUE constraint then absorbs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID, uuid5

_NAMESPACE = UUID("6f1c3b1e-6a8e-4c55-9a43-7b3c1f0d2a11")


def job_id(
    user_id: str, idempotency_key: str | None, given: UUID | None, otherwise: Callable[[], UUID]
) -> UUID:
    """The one rule for a new job's id, on every path: the id the create names; else the
    idempotency key's; else ``otherwise()`` (a fresh id for an HTTP submit, the record's for
    a Kafka create)."""
    if given is not None:
        return given
    if idempotency_key is not None:
        return job_id_for_key(user_id, idempotency_key)
    return otherwise()


def job_id_for_key(user_id: str, idempotency_key: str) -> UUID:
    return uuid5(_NAMESPACE, f"idem\x1f{user_id}\x1f{idempotency_key}")


def job_id_for_record(topic: str, partition: int, offset: int) -> UUID:
    return uuid5(_NAMESPACE, f"rec\x1f{topic}\x1f{partition}\x1f{offset}")


def execution_id_for(job_id: UUID, scheduled_for: datetime, attempt: int) -> UUID:
    return uuid5(job_id, f"{scheduled_for.isoformat()}\x1f{attempt}")

"""Submitting a job straight to ``jobs.commands``, for producers that already talk to Kafka.

The command is the one the API would produce for the same spec (``api.commands``): the same
job id rule (an ``idempotency_key`` always names the same job) and the same record, keyed by
user_id and placed on the partition Java's murmur2 partitioner picks for that key, which is
the partition of the shard that owns the tenant.

There is no credential on this path: whoever may produce to the topic may submit for any
tenant, so the spec must name its ``user_id``. Nothing answers here; a create the scheduler
refuses (a bad target, a quota) becomes a dead letter in ``jobs.dlq``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaProducer

from api.commands import create_command, job_id_for
from core.settings import KafkaSettings, load
from schemas.v1.jobs import JobSpec
from topics.catalog import catalog
from topics.partitioner import partition_for
from topics.producer import durable_producer


async def submit_via_kafka(
    spec: JobSpec | Mapping[str, Any],
    *,
    producer: AIOKafkaProducer | None = None,
    kafka: KafkaSettings | None = None,
) -> UUID:
    """Produce a create command for ``spec``; its job id once the broker acknowledged it.

    ``producer`` is a started producer of the caller's (kept open); without one, a durable
    producer (acks=all, idempotent) is opened from ``kafka`` for this one record. ``kafka``
    (default: the ``KJS_*`` environment) names the topic (its namespace) and the brokers.
    Raises ``pydantic.ValidationError`` for a spec that is not a valid ``JobSpec``.
    """
    job = spec if isinstance(spec, JobSpec) else JobSpec.model_validate(dict(spec))
    settings = kafka if kafka is not None else load(KafkaSettings)
    topic = catalog(settings).commands.name
    job_id = job_id_for(job)
    command = create_command(job, job_id)
    key = command.user_id.encode()
    own = producer is None
    active = producer if producer is not None else durable_producer(settings)
    if own:
        await active.start()
    try:
        # Placed explicitly, so a producer configured with another partitioner still puts
        # the command where the tenant's shard reads it.
        partitions = await active.partitions_for(topic)
        await active.send_and_wait(
            topic,
            command.model_dump_json().encode(),
            key=key,
            partition=partition_for(key, len(partitions)),
        )
    finally:
        if own:
            await active.stop()
    return job_id

"""Apply the commands of ``jobs.commands`` to the shard that owns their tenant."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
from pydantic import ValidationError

from kjs.settings import SchedulerSettings
from scheduler import store
from scheduler.deadletters import dead_letter
from scheduler.kafka_io import Sender
from scheduler.occurrences import first_run
from scheduler.records import Record
from scheduler.retrying import until_available
from scheduler.shards import Shards
from schemas.v1.commands import COMMAND, AnyCommand, CancelCommand, CreateCommand, TriggerCommand
from schemas.v1.ids import job_id_for_key, job_id_for_record
from schemas.v1.schedules import OnceSchedule
from topics.catalog import Catalog
from topics.partitioner import partition_for

log = logging.getLogger(__name__)
REROUTED_FROM = "kjs-rerouted-from"


class Rejected(Exception):
    """A command that is well-formed but cannot be applied; it goes to the DLQ."""


def format_errors(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    ]
    return "invalid command: " + "; ".join(parts)


def job_id_of(command: CreateCommand, record: Record) -> UUID:
    job = command.job
    if job.job_id is not None:
        return job.job_id
    if job.idempotency_key is not None:
        return job_id_for_key(job.user_id, job.idempotency_key)
    return job_id_for_record(record.topic, record.partition, record.offset)


@dataclass
class CommandHandler:
    shards: Shards
    pool: asyncpg.Pool
    sender: Sender
    catalog: Catalog
    settings: SchedulerSettings

    async def handle(self, record: Record) -> str:
        """Apply one command record; returns the outcome (for metrics and tests).

        1. Parse and validate; a bad record goes to the DLQ with the reason.
        2. Check the key is the command's user_id and that the record sits on that key's
           murmur2 partition; a record on another partition (a producer with librdkafka's
           CRC32 default) is re-routed there, with its job_id fixed first so that a
           repeated re-route is still one job.
        3. Apply it to Postgres under the shard's epoch, waiting out a Postgres outage.
           Only then does the handler return and the offset become committable.
        """
        try:
            if record.value is None:
                raise Rejected("empty value")
            try:
                command = COMMAND.validate_json(record.value)
            except ValidationError as exc:
                raise Rejected(format_errors(exc)) from None
            user_id = command.user_id
            if record.key is None or record.key != user_id.encode():
                raise Rejected(f"record key {record.key!r} is not the command's user_id")
            home = partition_for(record.key, self.catalog.commands.partitions)
            if home != record.partition:
                await self._reroute(command, record, home)
                return "rerouted"
            return await until_available(
                lambda: self._apply(command, record), f"command {record.source}"
            )
        except Rejected as exc:
            reason = str(exc)
            await until_available(
                lambda: dead_letter(self.sender, self.catalog.dlq.name, record, reason),
                "dead letter",
            )
            return "rejected"

    async def _reroute(self, command: AnyCommand, record: Record, home: int) -> None:
        if isinstance(command, CreateCommand):
            job = command.job.model_copy(update={"job_id": job_id_of(command, record)})
            command = command.model_copy(update={"job": job})
        headers = [*record.headers, (REROUTED_FROM, record.source.encode())]
        log.info("re-routing %s to partition %d", record.source, home)

        async def send() -> None:
            ack = await self.sender.send(
                record.topic,
                record.key,
                command.model_dump_json().encode(),
                partition=home,
                headers=headers,
            )
            await ack

        await until_available(send, f"re-route {record.source}")

    async def _apply(self, command: AnyCommand, record: Record) -> str:
        shard = await self.shards.get(record.partition)
        if isinstance(command, CancelCommand):
            outcome = await store.cancel_job(
                self.pool, record.partition, shard.epoch, command.user_id, command.job_id
            )
            if outcome == "unknown":
                raise Rejected(f"cancel: no job {command.job_id} for user {command.user_id}")
            if outcome == "finished":
                raise Rejected(f"cancel: job {command.job_id} has already finished")
            shard.timer.forget(command.job_id)
            return "cancelled"
        if isinstance(command, TriggerCommand):
            triggered = await store.trigger_job(
                self.pool,
                record.partition,
                shard.epoch,
                command.user_id,
                command.job_id,
                datetime.now(UTC),
            )
            if isinstance(triggered, str):
                raise Rejected(f"trigger: job {command.job_id} is {triggered}")
            shard.timer.offer_retry(triggered.execution_id, triggered.due_at)
            return "triggered"
        job = command.job
        now = datetime.now(UTC)
        if isinstance(job.schedule, OnceSchedule):
            grace = timedelta(seconds=self.settings.past_grace_s)
            if job.schedule.at < now - grace:
                raise Rejected(
                    f"schedule.at {job.schedule.at.isoformat()} is more than "
                    f"{self.settings.past_grace_s:g}s in the past"
                )
        first = first_run(job.schedule, now, anchor=now)
        if first is None:
            raise Rejected("schedule has no future occurrence")
        job_id = job_id_of(command, record)
        inserted = await store.insert_job(
            self.pool,
            shard.epoch,
            store.NewJob(
                job_id=job_id,
                user_id=job.user_id,
                shard=record.partition,
                name=job.name,
                idempotency_key=job.idempotency_key,
                schedule=job.schedule.model_dump(mode="json"),
                target=job.target.model_dump(mode="json"),
                priority=job.priority,
                retry=job.retry.model_dump(mode="json"),
                next_run_at=first,
                created_at=now,
                source=record.source,
            ),
        )
        if not inserted:
            return "duplicate"
        shard.timer.offer(job_id, first)
        return "created"

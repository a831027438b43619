"""Apply the commands of ``jobs.commands`` to the shard that owns their tenant."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import ValidationError

from core import tracing
from core.clock import SYSTEM_CLOCK, Clock
from core.queries import QUERIES
from core.quotas import PayloadTooLarge, QuotaExceeded, Quotas, target_bytes
from core.secrets import SecretBox
from core.settings import SchedulerSettings, SecuritySettings, TargetSettings
from scheduler.calendars import (
    CalendarTaken,
    define_calendar,
    delete_calendar,
    resolve_calendars,
)
from scheduler.daily_budget import DailyBudget
from scheduler.deadletters import dead_letter
from scheduler.firing import SCHEDULE, effective_due, fires_close
from scheduler.kafka_io import Sender, send_to_partition
from scheduler.metrics import COMMANDS
from scheduler.model import NewJob
from scheduler.outages import until_available
from scheduler.records import Record
from scheduler.shards import NotOwned, OwnedShard, Shards
from scheduler.store.jobs import insert_job, job_exists
from scheduler.store.lifecycle import backfill_job, cancel_job, change_job, trigger_job
from scheduler.store.shards import Fenced
from schemas.v1.commands import (
    AnyCommand,
    BackfillCommand,
    CancelCommand,
    CreateCommand,
    DefineCalendarCommand,
    DeleteCalendarCommand,
    JobChanges,
    PauseCommand,
    ResumeCommand,
    TriggerCommand,
    UpdateCommand,
    decode_command,
)
from schemas.v1.ids import job_id, job_id_for_record
from schemas.v1.schedules import OnceSchedule
from schemas.v1.statuses import ALLOWED_FROM
from schemas.v1.target_policy import check_target, describe
from schemas.v1.targets import Target
from timetable.backfill import BackfillRefused, backfill_occurrences
from timetable.exclusions import UnknownCalendar, exclusion_problem
from timetable.occurrences import first_run
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
    return job_id(
        job.user_id,
        job.idempotency_key,
        job.job_id,
        otherwise=lambda: job_id_for_record(record.topic, record.partition, record.offset),
    )


@dataclass
class CommandHandler:
    shards: Shards
    pool: asyncpg.Pool
    sender: Sender
    catalog: Catalog
    settings: SchedulerSettings
    targets: TargetSettings = field(default_factory=TargetSettings)
    quotas: Quotas = field(default_factory=lambda: Quotas(SecuritySettings()))
    # Seals the credential-like values of targets before they are stored (core.secrets).
    secrets: SecretBox = field(default_factory=SecretBox)
    # Now, for every decision (first run, the past-grace check, a trigger's due time).
    clock: Clock = SYSTEM_CLOCK

    @property
    def reserved_topics(self) -> set[str]:
        return {t.name for t in self.catalog.all()}

    async def handle(self, record: Record) -> str:
        """Apply one command record; returns the outcome (for metrics and tests).

        1. Parse and validate; a bad record goes to the DLQ with the reason.
        2. Check the key is the command's user_id and that the record sits on that key's
           murmur2 partition; a record on another partition (a producer with librdkafka's
           CRC32 default) is re-routed there, with its job_id fixed first so that a
           repeated re-route is still one job.
        3. Apply it to Postgres under the shard's epoch, waiting out a Postgres outage.
           Only then does the handler return and the offset become committable.

        With tracing on this is the ``apply`` span, child of the record's ``traceparent``
        header; a created job (or a triggered run) stores what it passes on.
        """
        parent = tracing.from_headers(record.headers)
        span = tracing.start("apply", parent, None, tracing.CONSUMER)
        try:
            kind, outcome = await self._handle(record, tracing.passed_on(span, parent))
        finally:
            tracing.end(span)
        COMMANDS.labels(kind, outcome).inc()
        return outcome

    def parse(self, record: Record) -> AnyCommand:
        """The record's command; ``Rejected`` for an empty or invalid value, or a key that is
        not the command's user_id."""
        if record.value is None:
            raise Rejected("empty value")
        try:
            command = decode_command(record.value)
        except ValidationError as exc:
            raise Rejected(format_errors(exc)) from None
        if record.key is None or record.key != command.user_id.encode():
            raise Rejected(f"record key {record.key!r} is not the command's user_id")
        return command

    def home_of(self, command: AnyCommand) -> int:
        """The partition (shard) of the command's tenant: murmur2 of its user_id, over the
        count the shards were last claimed with (a resize changes it)."""
        count = self.shards.routed_by(self.catalog.commands.partitions)
        return partition_for(command.user_id.encode(), count)

    async def _handle(self, record: Record, traceparent: str | None) -> tuple[str, str]:
        """(command type or "invalid", outcome)."""
        kind = "invalid"
        try:
            command = self.parse(record)
            kind = command.type
            home = self.home_of(command)
            if home != record.partition:
                await self._reroute(command, record, home)
                return kind, "rerouted"
            outcome = await until_available(
                lambda: self._apply(command, record, traceparent), f"command {record.source}"
            )
            return kind, outcome
        except (Fenced, NotOwned):
            raise
        except Exception as exc:
            # A bug or a constraint the checks above missed must not stop the partition:
            # the command goes to the DLQ with the error, and the next one is applied.
            if not isinstance(exc, Rejected):
                log.exception("command %s could not be applied", record.source)
            reason = str(exc) if isinstance(exc, Rejected) else f"could not apply: {exc!r}"
            await until_available(
                lambda: dead_letter(self.sender, self.catalog.dlq.name, record, reason),
                "dead letter",
            )
            return kind, "rejected"

    async def _reroute(self, command: AnyCommand, record: Record, home: int) -> None:
        if isinstance(command, CreateCommand):
            job = command.job.model_copy(update={"job_id": job_id_of(command, record)})
            command = command.model_copy(update={"job": job})
        headers = [*record.headers, (REROUTED_FROM, record.source.encode())]
        log.info("re-routing %s to partition %d", record.source, home)

        value = command.model_dump_json().encode()
        await until_available(
            lambda: send_to_partition(self.sender, record.topic, record.key, value, home, headers),
            f"re-route {record.source}",
        )

    async def _apply(
        self, command: AnyCommand, record: Record, traceparent: str | None = None
    ) -> str:
        shard = await self.shards.get(record.partition)
        if isinstance(command, CreateCommand):
            return await self._create(command, record, shard, traceparent)
        if isinstance(command, CancelCommand):
            return await self._cancel(command, record.partition, shard)
        if isinstance(command, TriggerCommand):
            return await self._trigger(command, record.partition, shard, traceparent)
        if isinstance(command, BackfillCommand):
            return await self._backfill(command, record.partition, shard)
        if isinstance(command, DefineCalendarCommand):
            try:
                return await define_calendar(
                    self.pool,
                    record.partition,
                    shard.epoch,
                    command.user_id,
                    command.name,
                    command.calendar,
                )
            except CalendarTaken as exc:
                raise Rejected(str(exc)) from None
        if isinstance(command, DeleteCalendarCommand):
            return await delete_calendar(
                self.pool, record.partition, shard.epoch, command.user_id, command.name
            )
        return await self._change(command, record.partition, shard)

    async def _cancel(self, command: CancelCommand, partition: int, shard: OwnedShard) -> str:
        outcome = await cancel_job(
            self.pool, partition, shard.epoch, command.user_id, command.job_id
        )
        if outcome == "unknown":
            raise Rejected(f"cancel: no job {command.job_id} for user {command.user_id}")
        if outcome == "finished":
            raise Rejected(f"cancel: job {command.job_id} has already finished")
        shard.timer.forget(command.job_id)
        return "cancelled"

    async def _trigger(
        self,
        command: TriggerCommand,
        partition: int,
        shard: OwnedShard,
        traceparent: str | None = None,
    ) -> str:
        now = self.clock()
        try:
            triggered = await trigger_job(
                self.pool,
                partition,
                shard.epoch,
                command.user_id,
                command.job_id,
                now,
                partial(DailyBudget(self.quotas).take_one, user_id=command.user_id, now=now),
                traceparent,
            )
        except QuotaExceeded as exc:
            raise Rejected(f"quota: {exc.reason}") from None
        if isinstance(triggered, str):
            raise Rejected(f"trigger: job {command.job_id} is {triggered}")
        shard.timer.offer_pending(triggered.execution_id, triggered.due_at)
        return "triggered"

    async def _backfill(self, command: BackfillCommand, partition: int, shard: OwnedShard) -> str:
        now = self.clock()

        def plan(job: Any) -> tuple[list[datetime], bool]:
            schedule = SCHEDULE.validate_python(job["schedule"])
            occurrences = backfill_occurrences(
                schedule, command.from_, command.to, now, anchor=job["created_at"]
            )
            overlap = command.overlap or getattr(schedule, "overlap", "allow")
            return occurrences, overlap != "allow"

        async def count_runs(conn: Any, runs: int) -> None:
            await DailyBudget(self.quotas).take_runs(conn, command.user_id, now, runs)

        try:
            runs = await backfill_job(
                self.pool,
                partition,
                shard.epoch,
                command.user_id,
                command.job_id,
                plan,
                now,
                count_runs,
            )
        except BackfillRefused as exc:
            raise Rejected(f"backfill: {exc}") from None
        except QuotaExceeded as exc:
            raise Rejected(f"quota: {exc.reason}") from None
        if isinstance(runs, str):
            raise Rejected(f"backfill: job {command.job_id} is {runs}")
        for run in runs:
            shard.timer.offer_pending(run.execution_id, run.due_at)
        return "backfilled"

    async def _change(
        self,
        command: PauseCommand | ResumeCommand | UpdateCommand,
        partition: int,
        shard: OwnedShard,
    ) -> str:
        """pause: scheduled -> paused; resume: paused -> scheduled; update: either, in place.

        Missed occurrences of a paused job stay in its next_run_at, so on resume the
        catch-up policy decides about them, as after a shard outage.
        """
        now = self.clock()
        if isinstance(command, PauseCommand):
            changes = _set(status="paused")
        elif isinstance(command, ResumeCommand):
            changes = _set(status="scheduled")
        else:
            if command.changes.target is not None:
                self._within_payload(command.user_id, command.changes.target)
            if command.changes.schedule is not None:
                schedule = await self._resolved(command.user_id, command.changes.schedule)
                changed_to = command.changes.model_copy(update={"schedule": schedule})
                command = command.model_copy(update={"changes": changed_to})
            changes = _sealed(self.secrets, command, now)
        allowed = ALLOWED_FROM[command.type]
        changed = await change_job(
            self.pool,
            partition,
            shard.epoch,
            command.user_id,
            command.job_id,
            allowed,
            changes,
            now,
        )
        if isinstance(changed, str):
            raise Rejected(f"{command.type}: job {command.job_id} is {changed}")
        shard.timer.forget(command.job_id)
        if changed.status == "scheduled" and changed.next_run_at is not None:
            schedule = SCHEDULE.validate_python(changed.schedule)
            shard.timer.offer(
                command.job_id,
                effective_due(schedule, command.job_id, changed.next_run_at),
                close=fires_close(schedule),
            )
        return {"pause": "paused", "resume": "resumed", "update": "updated"}[command.type]

    def _within_payload(self, user_id: str, target: Target) -> None:
        try:
            self.quotas.check_payload(user_id, target_bytes(target))
        except PayloadTooLarge as exc:
            raise Rejected(f"quota: {exc.reason}") from None

    async def _resolved(self, user_id: str, schedule: Any) -> Any:
        """The schedule with its named calendars' rules copied in (``Rejected``: unknown)."""
        try:
            return await resolve_calendars(self.pool, user_id, schedule)
        except UnknownCalendar as exc:
            raise Rejected(f"schedule.exclude.calendars: {exc}") from None

    async def _within_quotas(self, user_id: str, job_id: UUID, record: Record) -> None:
        """Rejected ("quota: ...") past the tenant's limits. This shard sees every command of
        the tenant, so its count is the authoritative one; a redelivered create of a job that is
        already stored is not counted again (the insert reports it as a duplicate)."""
        if not self.quotas.counts_creates(user_id):
            return
        cap = self.quotas.active_cap(user_id)
        if await job_exists(self.pool, job_id):
            return
        try:
            if cap is not None:
                active = await self.pool.fetchval(QUERIES["count_active_jobs"], user_id, cap)
                self.quotas.check_active(user_id, int(active))
            at = record.timestamp if record.timestamp is not None else self.clock().timestamp()
            self.quotas.take_submission(user_id, at)
        except QuotaExceeded as exc:
            raise Rejected(f"quota: {exc.reason}") from None

    def new_job(
        self, command: CreateCommand, record: Record, now: datetime, traceparent: str | None = None
    ) -> tuple[NewJob, datetime]:
        """The row a create command stores, and when it is first due; ``Rejected`` when a
        check refuses it (the past, the operator's policy, the payload limit, no occurrence).
        Pure: the quotas that count (active jobs, submissions) are checked by the caller."""
        job = command.job
        if isinstance(job.schedule, OnceSchedule):
            grace = timedelta(seconds=self.settings.past_grace_s)
            if job.schedule.at < now - grace:
                raise Rejected(
                    f"schedule.at {job.schedule.at.isoformat()} is more than "
                    f"{self.settings.past_grace_s:g}s in the past"
                )
        violations = check_target(job.target, self.targets, self.reserved_topics)
        if violations:
            raise Rejected(f"target refused by the operator's policy: {describe(violations)}")
        self._within_payload(job.user_id, job.target)
        first = first_run(job.schedule, now, anchor=now)
        if first is None:
            raise Rejected("schedule has no future occurrence")
        _check_exclusions(job.schedule, now, anchor=now)
        job_id = job_id_of(command, record)
        row = NewJob(
            job_id=job_id,
            user_id=job.user_id,
            shard=record.partition,
            name=job.name,
            idempotency_key=job.idempotency_key,
            schedule=job.schedule.model_dump(mode="json"),
            target=self.secrets.seal_target(job.target.model_dump(mode="json"), job.user_id),
            priority=job.priority,
            retry=job.retry.model_dump(mode="json"),
            next_run_at=first,
            created_at=now,
            source=record.source,
            traceparent=traceparent,
            concurrency=None if job.concurrency is None else job.concurrency.model_dump(),
        )
        return row, effective_due(job.schedule, job_id, first)

    async def _create(
        self,
        command: CreateCommand,
        record: Record,
        shard: OwnedShard,
        traceparent: str | None = None,
    ) -> str:
        schedule = await self._resolved(command.user_id, command.job.schedule)
        command = command.model_copy(
            update={"job": command.job.model_copy(update={"schedule": schedule})}
        )
        row, due = self.new_job(command, record, self.clock(), traceparent)
        await self._within_quotas(row.user_id, row.job_id, record)
        if not await insert_job(self.pool, shard.epoch, row):
            return "duplicate"
        shard.timer.offer(row.job_id, due, close=fires_close(row.schedule))
        return "created"


def _set(**values: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda row: values


def _sealed(
    secrets: SecretBox, command: UpdateCommand, now: datetime
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``_update``'s columns, with a new target's secrets sealed as a created job's are."""
    columns = _update(command.changes, now)

    def sealed(row: dict[str, Any]) -> dict[str, Any]:
        values = columns(row)
        if "target" in values:
            values["target"] = secrets.seal_target(values["target"], command.user_id)
        return values

    return sealed


def _update(changes: JobChanges, now: datetime) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The columns an update sets; a new schedule recomputes the next run from now."""

    def columns(row: dict[str, Any]) -> dict[str, Any]:
        # A null field is "not given" (serialisers write them out), never "set to null".
        values: dict[str, Any] = {
            name: value.model_dump(mode="json") if hasattr(value, "model_dump") else value
            for name, value in changes
            if value is not None
        }
        if changes.schedule is not None:
            nxt = first_run(changes.schedule, now, anchor=row["created_at"])
            if nxt is None:
                raise Rejected("update: the new schedule has no future occurrence")
            _check_exclusions(changes.schedule, now, anchor=row["created_at"])
            values["next_run_at"] = nxt
        return values

    return columns


def _check_exclusions(schedule: Any, now: datetime, anchor: datetime) -> None:
    """``Rejected`` when the schedule's exclusions leave nothing to run (a bounded look)."""
    problem = exclusion_problem(schedule, now, anchor)
    if problem is not None:
        raise Rejected(f"schedule.exclude: {problem}")

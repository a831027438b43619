"""A batch of ``jobs.commands`` records: plain creates in one insert per shard, the rest alone.

Applying a create costs a fenced transaction; one at a time that is about a thousand creates a
second, which is less than a busy installation submits. Most commands are plain creates (a
valid job of a tenant whose creates need no counting), and those are independent of one
another, so a shard's run of them is stored with one statement
(``scheduler.store.jobs.insert_jobs``).
Everything else keeps the one-by-one path of ``CommandHandler.handle``, in record order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from opentelemetry.trace import Span

from core import tracing
from scheduler.commands import CommandHandler, Rejected
from scheduler.firing import fires_close
from scheduler.metrics import COMMANDS
from scheduler.model import NewJob
from scheduler.outages import until_available
from scheduler.records import Record
from scheduler.shards import NotOwned
from scheduler.store.jobs import insert_jobs
from scheduler.store.shards import Fenced
from schemas.v1.commands import CreateCommand
from timetable.exclusions import needs_calendars

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Create:
    record: Record
    row: NewJob
    due: datetime
    # Its apply span (tracing on), ended once the batch's insert is done.
    span: Span | None = None


@dataclass
class CommandBatches:
    handler: CommandHandler

    async def handle_batch(self, records: list[Record]) -> list[str]:
        """Apply a batch of command records; returns their outcomes (for metrics and tests).

        1. Split the batch by partition (shard); each keeps its record order, and a shard
           that moved away (fenced, not owned) does not stop the others.
        2. Within a shard, queue each plain create (see ``_plain_create``).
        3. Any other record first flushes the queue, then goes through
           ``CommandHandler.handle`` alone, so a cancel that follows its create in the batch
           finds the job stored.
        4. A flush stores the queued jobs in one fenced statement, waiting out a Postgres
           outage, and offers the new ones to the shard's timer. A repeat (redelivery,
           idempotency key) is a duplicate, as one by one. If the statement fails otherwise,
           the queued records go one by one, so that a bad one is dead-lettered alone.
        The batch's offsets become committable only when this returns.
        """
        by_partition: dict[int, list[Record]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        outcomes: list[str] = []
        for partition, batch in by_partition.items():
            outcomes += await self._apply_owned(partition, batch)
        return outcomes

    async def _apply_owned(self, partition: int, batch: list[Record]) -> list[str]:
        while True:
            try:
                return await self._apply(partition, batch)
            except Fenced as exc:
                # A resize fenced the shard without a rebalance: take it back and apply the
                # batch again (applying is idempotent), with the new partition count.
                if await self.handler.shards.reclaim(exc):
                    continue
                fenced: Exception = exc
            except NotOwned as exc:
                fenced = exc
            # The shard's new owner re-reads these records from the last committed
            # offset; this stale generation cannot commit past it.
            log.warning("not applying %d commands of shard %d: %s", len(batch), partition, fenced)
            return ["fenced"]

    async def _apply(self, partition: int, records: list[Record]) -> list[str]:
        outcomes: list[str] = []
        queued: list[_Create] = []
        for record in records:
            create = self._plain_create(record)
            if create is not None:
                queued.append(create)
                continue
            outcomes += await self._flush(partition, queued)
            queued = []
            outcomes.append(await self.handler.handle(record))
        outcomes += await self._flush(partition, queued)
        return outcomes

    def _plain_create(self, record: Record) -> _Create | None:
        """The record as a row to store in bulk, or None for the one-by-one path: anything
        but a valid create on its key's partition that passes every check, of a tenant whose
        creates need no counting (active jobs, submissions). Refusals are not decided here:
        the one-by-one path re-reads the record and dead-letters it with its reason."""
        handler = self.handler
        try:
            command = handler.parse(record)
            if not isinstance(command, CreateCommand):
                return None
            if handler.home_of(command) != record.partition:
                return None
            if handler.quotas.counts_creates(command.user_id):
                return None
            if needs_calendars(command.job.schedule):  # read from Postgres, one by one
                return None
            row, due = handler.new_job(command, record, handler.clock())
        except Rejected:
            return None
        parent = tracing.from_headers(record.headers)
        span = tracing.start("apply", parent, None, tracing.CONSUMER)
        if span is not None or parent is not None:
            row = replace(row, traceparent=tracing.passed_on(span, parent))
        return _Create(record, row, due, span)

    async def _flush(self, partition: int, queued: list[_Create]) -> list[str]:
        if not queued:
            return []
        handler = self.handler
        shard = await handler.shards.get(partition)
        rows = [c.row for c in queued]
        try:
            inserted = await until_available(
                lambda: insert_jobs(handler.pool, partition, shard.epoch, rows),
                f"commands of shard {partition}",
            )
        except (Fenced, NotOwned):
            raise
        except Exception:
            log.exception("bulk insert of %d jobs failed; applying them one by one", len(rows))
            return [await handler.handle(c.record) for c in queued]
        finally:
            for create in queued:
                tracing.end(create.span)
        outcomes = []
        for create in queued:
            job_id = create.row.job_id
            if job_id in inserted:
                inserted.discard(job_id)  # the same job again later in the batch: a repeat
                shard.timer.offer(job_id, create.due, close=fires_close(create.row.schedule))
                outcomes.append("created")
            else:
                outcomes.append("duplicate")
        for outcome in ("created", "duplicate"):
            COMMANDS.labels("create", outcome).inc(outcomes.count(outcome))
        return outcomes

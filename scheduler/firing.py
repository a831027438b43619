"""Firing: turn due jobs into execution rows, then into due events on the lanes."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
from pydantic import TypeAdapter

from scheduler import store
from scheduler.kafka_io import Sender
from scheduler.occurrences import next_run
from schemas.v1.events import DueEvent
from schemas.v1.ids import execution_id_for
from schemas.v1.schedules import OnceSchedule, Schedule
from topics.catalog import Catalog

log = logging.getLogger(__name__)
SCHEDULE: TypeAdapter[Schedule] = TypeAdapter(Schedule)


def plan(job: store.FiringJob, now: datetime) -> store.Fired:
    """The occurrence to write for a due job, and when the job runs after it.

    A recurring job that was due long ago (the shard was down) moves on to the next
    occurrence after *now*: missed ones are not replayed in a storm.
    """
    schedule = SCHEDULE.validate_python(job.schedule)
    scheduled_for = job.next_run_at
    occurrence = store.Occurrence(
        execution_id=execution_id_for(job.job_id, scheduled_for, 1),
        job_id=job.job_id,
        user_id=job.user_id,
        attempt=1,
        scheduled_for=scheduled_for,
        lane=job.priority,
        target=job.target,
    )
    if isinstance(schedule, OnceSchedule):
        return store.Fired(occurrence, None)
    after = max(scheduled_for, now)
    return store.Fired(occurrence, next_run(schedule, after=after, anchor=job.created_at))


class Dispatcher:
    """Sends due events for execution rows already written (the outbox's sending half)."""

    def __init__(self, pool: asyncpg.Pool, sender: Sender, cat: Catalog) -> None:
        self._pool = pool
        self._sender = sender
        self._catalog = cat

    async def dispatch(self, shard: int, occurrences: list[store.Occurrence]) -> None:
        """Produce each occurrence's due event, then record that Kafka has it.

        1. Queue every due event on its lane topic (key = job_id), without waiting on each.
        2. Wait for all acknowledgements (acks=all).
        3. Mark the executions dispatched. A crash before this step leaves them in the
           outbox, and whoever owns the shard next re-sends them; a duplicate due event
           is harmless because a worker only runs an execution it claimed from 'queued'.
        """
        if not occurrences:
            return
        acks = []
        for occ in occurrences:
            event = DueEvent(
                execution_id=occ.execution_id,
                job_id=occ.job_id,
                user_id=occ.user_id,
                attempt=occ.attempt,
                scheduled_for=occ.scheduled_for,
                lane=occ.lane,  # type: ignore[arg-type]
                target=occ.target,  # type: ignore[arg-type]
                shard=shard,
                not_before=occ.due_at,
            )
            topic = self._catalog.due[event.lane].name
            acks.append(
                await self._sender.send(
                    topic, str(occ.job_id).encode(), event.model_dump_json().encode()
                )
            )
        await asyncio.gather(*acks)
        await store.mark_dispatched(self._pool, [o.execution_id for o in occurrences])


async def resend_outbox(
    dispatcher: Dispatcher, pool: asyncpg.Pool, shard: int, age_s: float
) -> int:
    """Re-send executions that were written but never acknowledged, older than ``age_s``."""
    before = datetime.now(UTC) - timedelta(seconds=age_s)
    pending = await store.undispatched(pool, shard, before)
    if pending:
        log.info("shard %s: re-sending %d undispatched executions", shard, len(pending))
        await dispatcher.dispatch(shard, pending)
    return len(pending)

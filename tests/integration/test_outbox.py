"""The outbox: execution rows committed by a fire but not yet acknowledged by Kafka.

A scheduler that dies between the commit of the rows it fired and their mark as dispatched
leaves them with ``dispatched_at IS NULL``; the next owner of the shard re-sends their due
events when its timer starts. The mark is fenced like every other write of a shard: an owner
that lost the shard cannot take rows out of the new owner's outbox.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg
import pytest

from core.queries import QUERIES
from core.settings import KafkaSettings, SchedulerSettings
from scheduler.firing import Dispatcher, plan
from scheduler.kafka_io import ProducerSender
from scheduler.model import NewJob, Occurrence
from scheduler.store.firing import fire_due, mark_dispatched, undispatched
from scheduler.store.jobs import insert_jobs
from scheduler.store.shards import Fenced, claim_shard
from scheduler.timer import ShardTimer
from schemas.v1.events import DueEvent
from tests.integration.worker_harness import TopicReader
from tests.support.waiting import eventually
from topics.catalog import Catalog, catalog

pytestmark = pytest.mark.services


async def fire(
    pool: asyncpg.Pool, shard: int, epoch: int, user_id: str, n: int
) -> list[Occurrence]:
    """Insert ``n`` one-time jobs and fire them (the first half of a fire: rows committed,
    due events not sent): what a scheduler killed before its dispatch leaves behind."""
    now = datetime.now(UTC)
    jobs = []
    for i in range(n):
        at = now + timedelta(seconds=60 + i)  # far enough that no timer fires them itself
        jobs.append(
            NewJob(
                job_id=uuid.uuid4(),
                user_id=user_id,
                shard=shard,
                name=f"outbox-{i}",
                idempotency_key=None,
                schedule={"type": "once", "at": at.isoformat()},
                target={"type": "kafka", "topic": "nowhere", "value": None},
                priority="normal",
                retry={},
                next_run_at=at,
                created_at=now,
                source="test",
            )
        )
    await insert_jobs(pool, shard, epoch, jobs)
    fired = await fire_due(
        pool,
        shard,
        epoch,
        [j.job_id for j in jobs],
        now + timedelta(seconds=120),
        partial(plan, now=now),
    )
    occurrences = [o for f in fired for o in f.occurrences]
    assert len(occurrences) == n
    return occurrences


async def dispatched_at(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    rows = await pool.fetch(
        "SELECT execution_id, dispatched_at FROM kjs_executions"
        " WHERE execution_id = ANY($1::uuid[])",
        ids,
    )
    assert len(rows) == len(ids)
    return {r["execution_id"]: r["dispatched_at"] for r in rows if r["dispatched_at"] is not None}


async def due_events(settings: KafkaSettings, cat: Catalog) -> list[DueEvent]:
    reader = TopicReader(settings.kafka_bootstrap, cat.due["normal"])
    await reader.start()
    try:
        return [DueEvent.model_validate_json(r.value) for r in await reader.read_to_end()]
    finally:
        await reader.stop()


async def test_the_next_owner_resends_what_a_crash_left_in_the_outbox(
    pool: asyncpg.Pool, own_topics: KafkaSettings, sender: ProducerSender, shard: int, user_id: str
) -> None:
    cat = catalog(own_topics)
    old = await claim_shard(pool, shard, "old-owner")
    # One batch the old owner fired and sent in full, then one it fired and died before
    # sending (a crash between the commit and the mark).
    sent = await fire(pool, shard, old, user_id, 1)
    await Dispatcher(pool, sender, cat).dispatch(shard, old, sent)
    crashed = await fire(pool, shard, old, user_id, 3)
    crashed_ids = [o.execution_id for o in crashed]
    assert await dispatched_at(pool, crashed_ids) == {}, "in the outbox"

    new = await claim_shard(pool, shard, "new-owner")
    # A long window: the timer's periodic outbox pass (every half window) would not come
    # before the deadline below; only the re-send at start can pass this test.
    settings = SchedulerSettings(window_s=120)
    timer = ShardTimer(shard, new, pool, Dispatcher(pool, sender, cat), settings)
    task = asyncio.create_task(timer.run())
    try:

        async def all_marked() -> dict[uuid.UUID, datetime] | None:
            if task.done():
                task.result()  # a crashed timer shows here, not as a timeout
            marked = await dispatched_at(pool, crashed_ids)
            return marked if len(marked) == len(crashed_ids) else None

        await eventually(all_marked, timeout_s=10, what="the new owner to re-send the outbox")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    events = await due_events(own_topics, cat)
    by_id: dict[uuid.UUID, list[DueEvent]] = {}
    for event in events:
        by_id.setdefault(event.execution_id, []).append(event)
    # Each execution left in the outbox was sent, once, as the row says.
    for occ in crashed:
        (event,) = by_id.pop(occ.execution_id)
        assert (event.job_id, event.user_id, event.attempt, event.shard) == (
            occ.job_id,
            user_id,
            1,
            shard,
        )
        assert event.scheduled_for == occ.scheduled_for
    # What the old owner had sent and marked is not sent again.
    assert list(by_id) == [sent[0].execution_id] and len(by_id[sent[0].execution_id]) == 1


async def test_an_owner_that_lost_the_shard_cannot_mark_rows_dispatched(
    pool: asyncpg.Pool, own_topics: KafkaSettings, sender: ProducerSender, shard: int, user_id: str
) -> None:
    cat = catalog(own_topics)
    old = await claim_shard(pool, shard, "old-owner")
    fired = await fire(pool, shard, old, user_id, 2)
    ids = [o.execution_id for o in fired]
    new = await claim_shard(pool, shard, "new-owner")

    # The old owner's dispatch still reaches Kafka (a duplicate is harmless), but its mark
    # is refused: the rows stay in the outbox of the new owner, who re-sends them.
    with pytest.raises(Fenced):
        await Dispatcher(pool, sender, cat).dispatch(shard, old, fired)
    assert await dispatched_at(pool, ids) == {}
    with pytest.raises(Fenced):
        await mark_dispatched(pool, shard, old, ids)
    assert await dispatched_at(pool, ids) == {}
    outbox = await undispatched(pool, shard, 0.0)
    assert {o.execution_id for o in outbox} == set(ids)

    await mark_dispatched(pool, shard, new, ids)
    assert set(await dispatched_at(pool, ids)) == set(ids)


async def test_marking_never_waits_on_a_row_a_worker_is_claiming(
    pool: asyncpg.Pool, shard: int, user_id: str
) -> None:
    """A worker can claim an execution before its shard has marked it dispatched (the ack
    comes late under load): the mark skips the row the claim holds instead of waiting on it,
    which deadlocked when the two statements locked their rows in different orders."""
    epoch = await claim_shard(pool, shard, "owner")
    claiming, other = (o.execution_id for o in await fire(pool, shard, epoch, user_id, 2))
    async with pool.acquire() as worker, worker.transaction():
        claimed = await worker.fetch(QUERIES["claim_executions"], [claiming], [7.0], "w-1")
        assert [r["execution_id"] for r in claimed] == [claiming]
        # Held by the open claim: a mark that waited on it would not return in time.
        await asyncio.wait_for(mark_dispatched(pool, shard, epoch, [claiming, other]), 5)
        assert set(await dispatched_at(pool, [claiming, other])) == {other}
    outbox = await undispatched(pool, shard, 0.0)
    assert claiming not in {o.execution_id for o in outbox}  # claimed: not queued any more

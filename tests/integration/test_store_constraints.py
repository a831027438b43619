"""The store's constraints carry the state machine and the deduplication."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from core.clock import utcnow
from scheduler.model import Failure, NewJob, Recorded
from scheduler.store.firing import fire_due
from scheduler.store.jobs import insert_job
from scheduler.store.leases import requeue_expired
from scheduler.store.results import record_result
from scheduler.store.shards import Fenced, claim_shard
from schemas.v1.events import ResultEvent

pytestmark = pytest.mark.services

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def new_job(shard: int, user_id: str, key: str | None = None) -> NewJob:
    return NewJob(
        job_id=uuid.uuid4(),
        user_id=user_id,
        shard=shard,
        name="n",
        idempotency_key=key,
        schedule={"type": "once", "at": NOW.isoformat()},
        target={"type": "http", "url": "http://127.0.0.1/x"},
        priority="normal",
        retry={},
        next_run_at=NOW,
        created_at=NOW,
        source="test",
    )


@pytest.fixture
async def shard(pool: asyncpg.Pool) -> int:
    # Shards are shared by the session; tests take a high number nobody else uses.
    return 1000 + uuid.uuid4().int % 1_000_000


async def test_same_idempotency_key_is_one_job(
    pool: asyncpg.Pool, shard: int, user_id: str
) -> None:
    epoch = await claim_shard(pool, shard, "a")
    assert await insert_job(pool, epoch, new_job(shard, user_id, "k1"))
    assert not await insert_job(pool, epoch, new_job(shard, user_id, "k1"))
    n = await pool.fetchval("SELECT count(*) FROM kjs_jobs WHERE user_id = $1", user_id)
    assert n == 1


async def test_a_fenced_owner_cannot_write(pool: asyncpg.Pool, shard: int, user_id: str) -> None:
    old = await claim_shard(pool, shard, "a")
    new = await claim_shard(pool, shard, "b")
    assert new == old + 1
    with pytest.raises(Fenced):
        await insert_job(pool, old, new_job(shard, user_id))
    assert await insert_job(pool, new, new_job(shard, user_id))


async def test_an_occurrence_fires_once_and_a_result_is_recorded_once(
    pool: asyncpg.Pool, shard: int, user_id: str
) -> None:
    from scheduler.firing import plan

    epoch = await claim_shard(pool, shard, "a")
    job = new_job(shard, user_id)
    await insert_job(pool, epoch, job)

    def fire() -> object:
        return fire_due(pool, shard, epoch, [job.job_id], NOW, lambda j: plan(j, now=NOW))

    first = await fire()  # type: ignore[misc]
    again = await fire()  # type: ignore[misc]
    assert len(first) == 1 and again == []
    occ = first[0].occurrences[0]
    result = ResultEvent(
        execution_id=occ.execution_id,
        job_id=job.job_id,
        user_id=user_id,
        attempt=1,
        status="succeeded",
        started_at=NOW,
        finished_at=NOW,
        worker="w",
    )

    async def never(failure: Failure) -> None:
        raise AssertionError("a success is not exhausted")

    def record() -> object:
        return record_result(pool, shard, epoch, result, lambda f: None, never, utcnow())

    assert await record() == Recorded()  # type: ignore[misc]
    assert await record() is None  # type: ignore[misc]
    status = await pool.fetchval("SELECT status FROM kjs_jobs WHERE job_id = $1", job.job_id)
    assert status == "succeeded"


async def test_check_constraints_refuse_impossible_rows(
    pool: asyncpg.Pool, shard: int, user_id: str
) -> None:
    epoch = await claim_shard(pool, shard, "a")
    job = new_job(shard, user_id)
    await insert_job(pool, epoch, job)
    with pytest.raises(asyncpg.CheckViolationError):
        # 'scheduled' without a next run would never fire.
        await pool.execute("UPDATE kjs_jobs SET next_run_at = NULL WHERE job_id = $1", job.job_id)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE kjs_jobs SET status = 'exploded' WHERE job_id = $1", job.job_id)


async def test_an_execution_whose_lease_expired_is_queued_again_with_its_id(
    pool: asyncpg.Pool, shard: int, user_id: str
) -> None:
    from scheduler.firing import plan

    epoch = await claim_shard(pool, shard, "a")
    job = new_job(shard, user_id)
    await insert_job(pool, epoch, job)
    fired = await fire_due(pool, shard, epoch, [job.job_id], NOW, lambda j: plan(j, now=NOW))
    execution_id = fired[0].occurrences[0].execution_id
    # A worker claimed it, then died: its lease ran out.
    await pool.execute(
        "UPDATE kjs_executions SET status = 'running', started_at = now(), worker = 'dead',"
        " lease_until = now() - interval '1 second' WHERE execution_id = $1",
        execution_id,
    )
    again = await requeue_expired(pool, shard, epoch, utcnow())
    assert [o.execution_id for o in again] == [execution_id]
    row = await pool.fetchrow(
        "SELECT status, worker FROM kjs_executions WHERE execution_id = $1", execution_id
    )
    assert (row["status"], row["worker"]) == ("queued", None)
    assert await requeue_expired(pool, shard, epoch, utcnow()) == []

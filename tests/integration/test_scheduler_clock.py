"""The shard's timetable on a stepped clock: what fires, and what is re-run, at which time.

Each test runs a real shard (``scheduler_harness``) on the real Postgres and Kafka, on a clock
that only moves when the test steps it, in 2030 so that anything still reading the system
clock would never see the job due. The timer fires a job its lead (3 s) before the instant.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from core.settings import KafkaSettings
from scheduler.records import Record
from scheduler.results import ResultHandler
from schemas.v1.events import ResultEvent
from tests.integration.scheduler_harness import ShardHarness, shard_harness, utc
from tests.support.waiting import eventually

pytestmark = pytest.mark.services

DAY, NEXT_DAY = "2030-01-07", "2030-01-08"
LEAD = timedelta(seconds=3)
TICK = timedelta(milliseconds=100)


async def due_events(h: ShardHarness, job_id: object, n: int) -> None:
    async def sent() -> bool:
        return len(h.due_events(job_id)) >= n  # type: ignore[arg-type]

    await eventually(sent, timeout_s=10, what=f"{n} due event(s) acknowledged")


async def test_a_cron_job_fires_once_at_its_occurrence_and_not_before(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    async with shard_harness(pool, kafka_settings, start=utc(DAY, "08:59:00")) as h:
        job = await h.add_job(user_id, {"type": "cron", "expression": "0 9 * * *"})
        nine = utc(DAY, "09:00:00")
        assert (await h.job(job))["next_run_at"] == nine

        await h.at(nine - LEAD - TICK)
        assert await h.executions(job) == [], "fired before its lead"

        await h.at(nine - LEAD)
        [run] = await h.executions(job)
        assert (run["scheduled_for"], run["status"]) == (nine, "queued")
        await due_events(h, job, 1)
        assert [e.scheduled_for for e in h.due_events(job)] == [nine]

        await h.at(utc(DAY, "09:00:30"))
        assert len(await h.executions(job)) == 1, "fired twice"
        tomorrow = utc(NEXT_DAY, "09:00:00")
        assert (await h.job(job))["next_run_at"] == tomorrow

        # A day later (far beyond the loaded window): the next occurrence, once.
        await h.at(tomorrow - LEAD - TICK)
        assert len(await h.executions(job)) == 1
        await h.at(tomorrow - LEAD)
        assert [r["scheduled_for"] for r in await h.executions(job)] == [nine, tomorrow]
        await due_events(h, job, 2)


async def test_a_lapsed_lease_is_requeued_once_the_clock_passes_lease_until(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    async with shard_harness(pool, kafka_settings, start=utc(DAY, "08:59:00")) as h:
        nine = utc(DAY, "09:00:00")
        job = await h.add_job(user_id, {"type": "once", "at": nine.isoformat()})
        await h.at(nine - LEAD)
        [run] = await h.executions(job)
        await due_events(h, job, 1)

        await h.at(nine)
        lease_until = utc(DAY, "09:00:07")
        await h.claimed(run["execution_id"], lease_until)

        await h.at(lease_until)
        await h.reaped()
        [still] = await h.executions(job)
        assert (still["status"], still["worker"]) == ("running", "w-harness"), "reaped early"

        await h.at(lease_until + TICK)
        await h.reaped()
        [again] = await h.executions(job)
        assert (again["execution_id"], again["status"], again["worker"]) == (
            run["execution_id"],
            "queued",
            None,
        )
        await due_events(h, job, 2)
        assert {e.execution_id for e in h.due_events(job)} == {run["execution_id"]}


async def test_a_retry_is_due_its_backoff_after_the_result_on_the_shards_clock(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    async with shard_harness(pool, kafka_settings, start=utc(DAY, "08:59:00")) as h:
        nine = utc(DAY, "09:00:00")
        job = await h.add_job(
            user_id, {"type": "once", "at": nine.isoformat()}, retry={"max_attempts": 2}
        )
        await h.at(nine - LEAD)
        [run] = await h.executions(job)
        await h.at(nine)
        await h.claimed(run["execution_id"], nine + timedelta(seconds=7))

        # The attempt fails at 09:00:01; the target asked for 20 s (Retry-After), which
        # outweighs the policy's 1 s backoff: the retry is due at 09:00:21.
        await h.at(utc(DAY, "09:00:01"))
        failed = ResultEvent(
            execution_id=run["execution_id"],
            job_id=job,
            user_id=user_id,
            attempt=1,
            status="failed",
            started_at=nine,
            finished_at=h.clock(),
            worker="w-harness",
            error="503",
            retryable=True,
            retry_after_s=20,
        )
        results = ResultHandler(h.shards, pool, h.sender, h.catalog, h.clock)
        value = failed.model_dump_json().encode()
        record = Record(h.catalog.results.name, h.shard, 0, user_id.encode(), value)
        assert await results.handle(record, failed) == "retrying"
        retry_due = utc(DAY, "09:00:21")
        first, second = await h.executions(job)
        assert first["status"] == "failed"
        assert (second["attempt"], second["status"], second["due_at"]) == (2, "pending", retry_due)

        await h.at(retry_due - LEAD - TICK)
        assert (await h.executions(job))[1]["status"] == "pending", "retried early"
        await h.at(retry_due - LEAD)
        assert (await h.executions(job))[1]["status"] == "queued"
        await due_events(h, job, 2)
        assert [e.attempt for e in h.due_events(job)] == [1, 2]

"""Concurrency slots on a shard with a stepped clock: what is held back ('pending', with the
reason), and what a recorded result lets go, for a job's key and a tenant's max_running."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import asyncpg
import pytest

from core.quotas import Quotas
from core.settings import KafkaSettings, QuotaLimits, SecuritySettings
from scheduler.daily_budget import DailyBudget
from scheduler.records import Record
from scheduler.results import ResultHandler
from schemas.v1.events import ResultEvent
from tests.integration.scheduler_harness import ShardHarness, shard_harness, utc
from tests.support.waiting import eventually

pytestmark = pytest.mark.services

DAY = "2030-01-07"
NINE = utc(DAY, "09:00:00")
LEAD = timedelta(seconds=3)


async def statuses(h: ShardHarness, jobs: list[UUID]) -> list[tuple[str, str | None]]:
    rows = await h.pool.fetch(
        "SELECT status, error FROM kjs_executions WHERE job_id = ANY($1::uuid[])"
        " ORDER BY status, execution_id",
        jobs,
    )
    return [(r["status"], r["error"]) for r in rows]


async def finish(h: ShardHarness, user_id: str, jobs: list[UUID]) -> UUID:
    """A worker's success result for one queued execution of ``jobs`` (not of another job
    queued on the shard, whose result would free no slot), through the shard's handler."""
    row = await h.pool.fetchrow(
        "SELECT execution_id, job_id FROM kjs_executions WHERE shard = $1"
        " AND status = 'queued' AND job_id = ANY($2::uuid[]) ORDER BY execution_id LIMIT 1",
        h.shard,
        jobs,
    )
    result = ResultEvent(
        execution_id=row["execution_id"],
        job_id=row["job_id"],
        user_id=user_id,
        attempt=1,
        status="succeeded",
        started_at=NINE,
        finished_at=h.clock(),
        worker="w-harness",
    )
    results = ResultHandler(h.shards, h.pool, h.sender, h.catalog, h.clock)
    record = Record(
        h.catalog.results.name, h.shard, 0, user_id.encode(), result.model_dump_json().encode()
    )
    assert await results.handle(record, result) == "recorded"
    return UUID(str(row["execution_id"]))


async def queued_count(h: ShardHarness, jobs: list[UUID], n: int) -> None:
    async def probe() -> bool:
        return sum(s == "queued" for s, _ in await statuses(h, jobs)) == n

    await eventually(probe, timeout_s=10, what=f"{n} queued")


async def test_a_key_holds_runs_beyond_its_limit_until_a_result_frees_a_slot(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    async with shard_harness(pool, kafka_settings, start=utc(DAY, "08:59:00")) as h:
        keyed = {"key": "reports", "limit": 2}
        jobs = [
            await h.add_job(user_id, {"type": "once", "at": NINE.isoformat()}, concurrency=keyed)
            for _ in range(4)
        ]
        other = await h.add_job(user_id, {"type": "once", "at": NINE.isoformat()})
        await h.at(NINE - LEAD)
        runs = await statuses(h, jobs)
        assert [s for s, _ in runs].count("queued") == 2
        held = [e for s, e in runs if s == "pending"]
        assert len(held) == 2
        assert all(e and "concurrency key 'reports' has its limit (2)" in e for e in held)
        assert await statuses(h, [other]) == [("queued", None)], "a job without the key is not held"

        await finish(h, user_id, jobs)
        await h.at(NINE - LEAD)  # the timer's next look releases the freed slot
        await queued_count(h, jobs, 2)
        runs = await statuses(h, jobs)
        assert sorted(s for s, _ in runs) == ["pending", "queued", "queued", "succeeded"]
        # The released run's due event went out, and its reason is gone.
        assert [e for s, e in runs if s == "queued"] == [None, None]


async def test_max_running_holds_the_tenants_runs_across_jobs(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    security = SecuritySettings(
        quota_tiers={"small": QuotaLimits(max_running=1)},
        quota_tenant_tiers={user_id: "small"},
    )
    budget = DailyBudget(Quotas(security))
    async with shard_harness(pool, kafka_settings, start=utc(DAY, "08:59:00"), budget=budget) as h:
        jobs = [
            await h.add_job(user_id, {"type": "once", "at": NINE.isoformat()}) for _ in range(3)
        ]
        await h.at(NINE - LEAD)
        runs = await statuses(h, jobs)
        assert sorted(s for s, _ in runs) == ["pending", "pending", "queued"]
        assert all("max_running (1)" in (e or "") for s, e in runs if s == "pending")
        for done in (1, 2):
            await finish(h, user_id, jobs)
            await h.at(NINE - LEAD)
            await queued_count(h, jobs, 1)
            assert sum(s == "succeeded" for s, _ in await statuses(h, jobs)) == done

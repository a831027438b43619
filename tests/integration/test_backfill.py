"""Backfill: a recurring job's past occurrences, run on request, each once, in order.

The shard side runs on ``scheduler_harness`` (a real shard on the real Postgres and Kafka, on
a stepped clock); the HTTP side on the in-process API, which publishes the command.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from api.models import ExecutionDetail
from core.queries import QUERIES
from core.quotas import Quotas
from core.settings import KafkaSettings, QuotaLimits, SecuritySettings
from scheduler.commands import CommandHandler, Rejected
from scheduler.records import Record
from scheduler.results import ResultHandler
from schemas.v1.commands import BackfillCommand
from schemas.v1.events import ResultEvent
from tests.integration.conftest import Client
from tests.integration.scheduler_harness import ShardHarness, shard_harness, utc
from tests.integration.test_api_submit import commands_for
from tests.support.waiting import eventually
from topics.catalog import Catalog

pytestmark = pytest.mark.services

DAY = "2030-01-07"
NOON = utc(DAY, "12:00:00")
EVERY_5_MIN = {"type": "cron", "expression": "*/5 * * * *"}


def command(user_id: str, job_id: UUID, from_: str, to: str, **more: Any) -> BackfillCommand:
    return BackfillCommand.model_validate(
        {
            "type": "backfill",
            "user_id": user_id,
            "job_id": str(job_id),
            "from": utc(DAY, from_).isoformat(),
            "to": utc(DAY, to).isoformat(),
            **more,
        }
    )


class Backfills:
    """The shard's command handler, applying backfill commands as if from the shard's own
    partition of ``jobs.commands`` (the routing to it is tested elsewhere)."""

    def __init__(self, h: ShardHarness, quotas: Quotas | None = None) -> None:
        self.h = h
        quotas = quotas or Quotas(SecuritySettings())
        self.handler = CommandHandler(
            h.shards, h.pool, h.sender, h.catalog, h.settings, quotas=quotas, clock=h.clock
        )
        self.offset = 0

    def record(self, cmd: BackfillCommand | bytes) -> Record:
        self.offset += 1
        value = cmd if isinstance(cmd, bytes) else cmd.model_dump_json().encode()
        key = b"" if isinstance(cmd, bytes) else cmd.user_id.encode()
        return Record(self.h.catalog.commands.name, self.h.shard, self.offset, key, value)

    async def apply(self, cmd: BackfillCommand) -> str:
        return await self.handler._apply(cmd, self.record(cmd))


async def backfill_rows(pool: asyncpg.Pool, job_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT scheduled_for, attempt, status, due_at, backfill FROM kjs_executions"
        " WHERE job_id = $1 ORDER BY scheduled_for, attempt",
        job_id,
    )
    return rows


async def due_events(h: ShardHarness, job_id: UUID, n: int) -> list[datetime]:
    async def sent() -> bool:
        return len(h.due_events(job_id)) >= n

    await eventually(sent, timeout_s=10, what=f"{n} due event(s) acknowledged")
    return [e.scheduled_for for e in h.due_events(job_id)]


async def test_a_backfill_runs_each_past_occurrence_once_in_order(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    async with shard_harness(pool, kafka_settings, start=NOON) as h:
        job = await h.add_job(user_id, EVERY_5_MIN)
        backfills = Backfills(h)
        expected = [utc(DAY, "10:00:00") + timedelta(minutes=5 * i) for i in range(24)]

        assert await backfills.apply(command(user_id, job, "10:00:00", "12:00:00")) == "backfilled"
        await h.advance(seconds=1)

        # 24 occurrences of [10:00, 12:00), dispatched oldest first, each once.
        assert await due_events(h, job, 24) == expected
        rows = await backfill_rows(pool, job)
        assert [r["scheduled_for"] for r in rows] == expected
        assert all(r["backfill"] and r["attempt"] == 1 for r in rows)
        assert {r["status"] for r in rows} == {"queued"}
        # Marked as a backfill where the API shows one execution.
        row = await h.pool.fetchrow(QUERIES["get_execution"], h.due_events(job)[0].execution_id)
        assert ExecutionDetail.model_validate(dict(row)).backfill
        # The job's own schedule is untouched: the backfill is not its runs.
        assert (await h.job(job))["next_run_at"] == utc(DAY, "12:05:00")

        # The same request again stores and runs nothing: kjs_executions_once holds.
        assert await backfills.apply(command(user_id, job, "10:00:00", "12:00:00")) == "backfilled"
        await h.advance(seconds=1)
        assert len(await backfill_rows(pool, job)) == 24
        assert not await pool.fetchval(
            "SELECT count(*) FROM kjs_executions WHERE job_id = $1 AND status = 'pending'", job
        )
        assert len(h.due_events(job)) == 24


async def test_an_occurrence_recorded_as_skipped_is_run_by_a_backfill(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    async with shard_harness(pool, kafka_settings, start=NOON) as h:
        job = await h.add_job(user_id, EVERY_5_MIN)
        skipped, ran = utc(DAY, "11:00:00"), utc(DAY, "11:05:00")
        for at, status in ((skipped, "skipped"), (ran, "succeeded")):
            await pool.execute(
                "INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,"
                " attempt, lane, status, started_at, finished_at, worker)"
                " VALUES (gen_random_uuid(), $1, $2, $3, $4, 1, 'normal', $5, $6, $4, $7)",
                job,
                user_id,
                h.shard,
                at,
                status,
                None if status == "skipped" else at,
                None if status == "skipped" else "w",
            )

        await Backfills(h).apply(command(user_id, job, "11:00:00", "11:10:00"))
        await h.advance(seconds=1)

        # The misfire is run now; the occurrence that ran is not run again.
        assert await due_events(h, job, 1) == [skipped]
        rows = await backfill_rows(pool, job)
        assert [(r["scheduled_for"], r["status"], r["backfill"]) for r in rows] == [
            (skipped, "queued", True),
            (ran, "succeeded", False),
        ]


async def test_a_serial_backfill_runs_one_occurrence_at_a_time(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    async with shard_harness(pool, kafka_settings, start=NOON) as h:
        job = await h.add_job(user_id, {"type": "cron", "expression": "0 * * * *"})
        hours = [utc(DAY, "09:00:00"), utc(DAY, "10:00:00"), utc(DAY, "11:00:00")]
        await Backfills(h).apply(command(user_id, job, "09:00:00", "12:00:00", overlap="forbid"))
        results = ResultHandler(h.shards, pool, h.sender, h.catalog, h.clock)

        for n, hour in enumerate(hours, start=1):
            await h.advance(seconds=1)
            assert (await due_events(h, job, n))[-1] == hour
            statuses = [r["status"] for r in await backfill_rows(pool, job)]
            assert statuses == ["succeeded"] * (n - 1) + ["queued"] + ["pending"] * (3 - n)
            [out] = [
                r
                for r in await h.executions(job)
                if r["status"] == "queued" and r["scheduled_for"] == hour
            ]
            await h.claimed(out["execution_id"], h.clock() + timedelta(seconds=30))
            done = ResultEvent(
                execution_id=out["execution_id"],
                job_id=job,
                user_id=user_id,
                attempt=1,
                status="succeeded",
                started_at=h.clock(),
                finished_at=h.clock(),
                worker="w-harness",
            )
            value = done.model_dump_json().encode()
            record = Record(h.catalog.results.name, h.shard, n, user_id.encode(), value)
            assert await results.handle(record, done) == "recorded"

        assert [r["status"] for r in await backfill_rows(pool, job)] == ["succeeded"] * 3
        assert len(h.due_events(job)) == 3


async def test_a_replace_jobs_own_runs_do_not_cancel_its_backfill(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    async def backfill_statuses(job: UUID) -> list[str]:
        return [r["status"] for r in await backfill_rows(pool, job) if r["backfill"]]

    async with shard_harness(pool, kafka_settings, start=NOON) as h:
        schedule = {"type": "cron", "expression": "0 * * * *", "overlap": "replace"}
        job = await h.add_job(user_id, schedule)
        await Backfills(h).apply(command(user_id, job, "09:00:00", "12:00:00"))
        await h.advance(seconds=1)  # the backfill's first run goes out; two wait
        assert await backfill_statuses(job) == ["queued", "pending", "pending"]

        # The job's own 13:00 run replaces its unfinished own runs, not the backfill's.
        await h.at(utc(DAY, "13:00:00"))
        own = {
            r["scheduled_for"]: r["status"]
            for r in await backfill_rows(pool, job)
            if not r["backfill"]
        }
        assert own[utc(DAY, "13:00:00")] == "queued"
        assert await backfill_statuses(job) == ["queued", "pending", "pending"]


async def test_a_backfill_spends_the_daily_executions_quota_all_or_nothing(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    def limited(per_day: int) -> Quotas:
        return Quotas(
            SecuritySettings(
                quota_tenant_tiers={user_id: "t"},
                quota_tiers={"t": QuotaLimits(executions_per_day=per_day)},
            )
        )

    async def used() -> int | None:
        n: int | None = await pool.fetchval(
            "SELECT executions FROM kjs_tenant_usage WHERE user_id = $1", user_id
        )
        return n

    async with shard_harness(pool, kafka_settings, start=NOON) as h:
        job = await h.add_job(user_id, EVERY_5_MIN)
        two_hours = command(user_id, job, "10:00:00", "12:00:00")
        with pytest.raises(Rejected, match="quota: 24 runs would pass 23 executions per day"):
            await Backfills(h, limited(23)).apply(two_hours)
        assert await backfill_rows(pool, job) == []
        assert not await used()

        assert await Backfills(h, limited(30)).apply(two_hours) == "backfilled"
        assert await used() == 24
        # Nothing stored again, nothing counted again.
        assert await Backfills(h, limited(30)).apply(two_hours) == "backfilled"
        assert await used() == 24


@pytest.mark.parametrize(
    ("schedule", "from_", "to", "reason"),
    [
        (EVERY_5_MIN, "11:00:00", "12:00:01", "backfill: to: is in the future"),
        (
            {"type": "cron", "expression": "*/30 * * * * *"},
            "00:00:00",
            "11:00:00",
            "more than 1000",
        ),
        ({"type": "once", "at": "2030-01-07T13:00:00Z"}, "10:00:00", "11:00:00", "recurring"),
    ],
)
async def test_a_backfill_the_shard_refuses_is_a_dead_letter_and_writes_nothing(
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    user_id: str,
    schedule: dict[str, Any],
    from_: str,
    to: str,
    reason: str,
) -> None:
    async with shard_harness(pool, kafka_settings, start=NOON) as h:
        job = await h.add_job(user_id, schedule)
        with pytest.raises(Rejected, match=reason):
            await Backfills(h).apply(command(user_id, job, from_, to))
        assert await backfill_rows(pool, job) == []


async def test_a_reversed_backfill_command_is_refused_naming_the_field(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    async with shard_harness(pool, kafka_settings, start=NOON) as h:
        backfills = Backfills(h)
        raw = (
            b'{"type": "backfill", "user_id": "%s", "job_id": "%s",'
            b' "from": "2030-01-07T11:00:00Z", "to": "2030-01-07T10:00:00Z"}'
        ) % (user_id.encode(), str(UUID(int=1)).encode())
        record = backfills.record(raw)
        record = Record(record.topic, record.partition, record.offset, user_id.encode(), raw)
        with pytest.raises(Rejected, match=r"backfill\.to: Value error, must be after from"):
            backfills.handler.parse(record)


# -- HTTP ------------------------------------------------------------------------------------


async def _job(pool: asyncpg.Pool, user_id: str, schedule: dict[str, Any]) -> UUID:
    row: asyncpg.Record = await pool.fetchrow(
        """INSERT INTO kjs_jobs (job_id, user_id, shard, name, schedule, target, priority, retry,
                                 status, next_run_at, source, created_at)
           VALUES (gen_random_uuid(), $1, 0, 'j', $2, $3, 'normal', $4, 'scheduled', $5, 'test',
                   $5::timestamptz - interval '1 day')
           RETURNING job_id""",
        user_id,
        schedule,
        {"type": "kafka", "topic": "out"},
        {"max_attempts": 3, "initial_delay_s": 1.0, "max_delay_s": 300.0},
        datetime.now(UTC) + timedelta(hours=1),
    )
    return UUID(str(row["job_id"]))


def _range(hours_ago: float, hours: float) -> dict[str, str]:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=hours_ago
    )
    return {"from": start.isoformat(), "to": (start + timedelta(hours=hours)).isoformat()}


async def test_a_backfill_over_http_is_one_command_on_the_tenants_partition(
    tenant_client: Client,
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
) -> None:
    job_id = await _job(pool, user_id, EVERY_5_MIN)
    body = {**_range(3, 2), "overlap": "forbid"}

    resp = await tenant_client.post(f"/v1/jobs/{job_id}/backfill", json=body)

    assert resp.status == 202, await resp.text()
    assert await resp.json() == {
        "job_id": str(job_id),
        "action": "backfill",
        "occurrences": 24,
        "status": "accepted",
    }
    [sent] = await commands_for(kafka_settings, topic_catalog, user_id)
    assert sent == BackfillCommand.model_validate(
        {"type": "backfill", "user_id": user_id, "job_id": str(job_id), **body}
    )


# Bodies are built when the test runs, not when it is collected: a range "1 hour ago to 1 hour
# ahead" collected at 04:59 is wholly in the past by 05:01, when the test may run.
_BAD_BACKFILLS: list[tuple[Callable[[], dict[str, Any]], str, str]] = [
    (lambda: _range(1, -1), "to", "must be after from"),
    (lambda: _range(1, 2), "to", "is in the future"),
    (lambda: _range(100, 90), "to", "more than 1000 occurrences"),
    (lambda: {**_range(3, 1), "overlap": "sometimes"}, "overlap", "Input should be"),
    (lambda: {"to": _range(3, 1)["to"]}, "from", "Field required"),
    (lambda: {**_range(3, 1), "from": "yesterday"}, "from", "datetime"),
]


@pytest.mark.parametrize(("make_body", "field", "message"), _BAD_BACKFILLS)
async def test_a_bad_backfill_is_422_naming_the_field_and_produces_nothing(
    tenant_client: Client,
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
    make_body: Callable[[], dict[str, Any]],
    field: str,
    message: str,
) -> None:
    job_id = await _job(pool, user_id, EVERY_5_MIN)

    resp = await tenant_client.post(f"/v1/jobs/{job_id}/backfill", json=make_body())

    assert resp.status == 422, await resp.text()
    [error] = (await resp.json())["errors"]
    assert error["field"] == field and message in error["message"], error
    assert await commands_for(kafka_settings, topic_catalog, user_id) == []


async def test_a_once_job_has_no_backfill(
    tenant_client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await _job(pool, user_id, {"type": "once", "at": "2030-01-07T13:00:00Z"})
    resp = await tenant_client.post(f"/v1/jobs/{job_id}/backfill", json=_range(3, 1))
    assert resp.status == 422
    assert (await resp.json())["errors"][0]["field"] == "job_id"


# -- kjs jobs backfill -----------------------------------------------------------------------


async def kjs_jobs(client: Client, key: str, *args: str) -> tuple[int, str, str]:
    """``kjs jobs ...`` as a user runs it, against the in-process API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
    env.update(KJS_API_URL=str(client.make_url("/")).rstrip("/"), KJS_API_KEY=key)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kjs.cli",
        "jobs",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    assert "Traceback" not in err.decode(), err.decode()
    return proc.returncode, out.decode(), err.decode()


async def test_kjs_jobs_backfill_prints_what_it_accepted_and_refuses_on_one_line(
    tenant_client: Client,
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    auth_headers: dict[str, str],
    user_id: str,
) -> None:
    key = auth_headers["Authorization"].removeprefix("Bearer ")
    job_id = str(await _job(pool, user_id, EVERY_5_MIN))
    past = _range(3, 2)

    code, out, _ = await kjs_jobs(
        tenant_client, key, "backfill", job_id, "--from", past["from"], "--to", past["to"]
    )
    assert code == 0
    assert out.strip() == f"job {job_id}: backfill of 24 occurrences accepted"
    assert len(await commands_for(kafka_settings, topic_catalog, user_id)) == 1

    for bad, says in [
        (_range(1, -1), "kjs: 422 Unprocessable Entity: to: must be after from"),
        (_range(1, 2), "kjs: 422 Unprocessable Entity: to: is in the future"),
        (_range(100, 90), "kjs: 422 Unprocessable Entity: to: the range holds more than 1000"),
    ]:
        code, out, err = await kjs_jobs(
            tenant_client, key, "backfill", job_id, "--from", bad["from"], "--to", bad["to"]
        )
        assert (code, out) == (1, "")
        assert len(err.splitlines()) == 1 and err.startswith(says), err
    assert len(await commands_for(kafka_settings, topic_catalog, user_id)) == 1

    code, _, err = await kjs_jobs(tenant_client, key, "backfill", job_id, "--from", past["from"])
    assert code == 2 and "--to" in err

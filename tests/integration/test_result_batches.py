"""A worker's batch of results (``ResultBatch``, one record per shard) recorded by the shard.

A batch mixes outcomes: its successes go into the shard's one transaction for successes,
its failures and repeats through the one-by-one path, exactly as separate records would.
"""

from __future__ import annotations

import asyncpg
import pytest
from pydantic import ValidationError

from core.settings import KafkaSettings
from scheduler.records import Record
from scheduler.results import ResultHandler
from schemas.v1.events import (
    KIND_HEADER,
    RESULT_BATCH_KIND,
    ResultBatch,
    ResultEvent,
    read_result_record,
    results_in,
)
from tests.integration.scheduler_harness import shard_harness, utc

pytestmark = pytest.mark.services

DAY = "2030-01-07"


def batch_record(topic: str, shard: int, results: list[ResultEvent]) -> Record:
    value = ResultBatch(results=results).model_dump_json().encode()
    return Record(topic, shard, 0, None, value, headers=[(KIND_HEADER, RESULT_BATCH_KIND)])


async def test_one_batch_records_a_success_schedules_a_retry_and_ignores_a_repeat(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    async with shard_harness(pool, kafka_settings, start=utc(DAY, "08:59:00")) as h:
        nine = utc(DAY, "09:00:00")
        once = {"type": "once", "at": nine.isoformat()}
        ok_job = await h.add_job(user_id, once)
        failing_job = await h.add_job(user_id, once, retry={"max_attempts": 2})
        await h.at(nine)
        [ok_run] = await h.executions(ok_job)
        [failing_run] = await h.executions(failing_job)
        for run in (ok_run, failing_run):
            await h.claimed(run["execution_id"], utc(DAY, "09:00:07"))
        await h.at(utc(DAY, "09:00:01"))

        def result(run: asyncpg.Record, job: object, status: str) -> ResultEvent:
            return ResultEvent(
                execution_id=run["execution_id"],
                job_id=job,  # type: ignore[arg-type]
                user_id=user_id,
                attempt=1,
                status=status,  # type: ignore[arg-type]
                started_at=nine,
                finished_at=h.clock(),
                worker="w-harness",
                error=None if status == "succeeded" else "503",
                retryable=status == "failed",
            )

        succeeded = result(ok_run, ok_job, "succeeded")
        batch = [succeeded, result(failing_run, failing_job, "failed"), succeeded]
        handler = ResultHandler(h.shards, pool, h.sender, h.catalog, h.clock)
        # Read as the results agent reads it, then recorded: the harness's shard number is
        # no partition of the test's topic, so routing (test_resize) is not what is tested.
        record = batch_record(h.catalog.results.name, h.shard, batch)
        outcomes = await handler.record(
            [(record, read_result_record(record.value, record.headers))]
        )

        assert sorted(outcomes) == ["duplicate", "recorded", "retrying"]
        [done] = await h.executions(ok_job)
        assert done["status"] == "succeeded"
        first, retry = await h.executions(failing_job)
        assert first["status"] == "failed"
        # Attempt 2 is scheduled: pending until the timer queues it (its backoff is inside
        # the lead, so that may have happened already).
        assert retry["attempt"] == 2 and retry["status"] in ("pending", "queued")


def test_a_record_without_the_batch_header_holds_one_result() -> None:
    batch = b'{"version": 1, "results": []}'
    with pytest.raises(ValidationError):
        results_in(batch, [])  # read as one ResultEvent: not one
    with pytest.raises(ValidationError, match="at least 1 item"):
        results_in(batch, [(KIND_HEADER, RESULT_BATCH_KIND)])

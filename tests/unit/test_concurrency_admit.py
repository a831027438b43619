"""Which executions a shard holds back for a concurrency slot (scheduler.concurrency.admit),
and the bad input of a job's concurrency over Kafka (over HTTP: test_api_validation)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from api.models import JobView
from core.settings import KafkaSettings, SchedulerSettings
from kjs.jobs_render import job_summary
from kjs.jobs_spec import UsageError, parse_concurrency
from scheduler.commands import CommandHandler
from scheduler.concurrency import admit
from scheduler.model import Occurrence
from scheduler.records import Record
from scheduler.shards import Shards
from tests.support.senders import RecordingSender
from topics.catalog import catalog
from topics.dlq import REASON
from topics.partitioner import partition_for

AT = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def occ(user: str = "u", key: str | None = "k", limit: int = 3) -> Occurrence:
    return Occurrence(
        uuid.uuid4(),
        uuid.uuid4(),
        user,
        1,
        AT,
        "normal",
        {"type": "http"},
        concurrency=None if key is None else {"key": key, "limit": limit},
    )


def test_a_key_admits_up_to_its_limit_and_holds_the_rest_in_order() -> None:
    batch = [occ() for _ in range(5)]
    held = admit(batch, {}, {}, {})
    assert list(held) == [o.execution_id for o in batch[3:]]
    assert "concurrency key 'k'" in held[batch[3].execution_id]
    assert "(3)" in held[batch[3].execution_id]


def test_running_executions_take_slots_and_keys_are_per_tenant() -> None:
    mine, theirs, other_key = occ("u"), occ("v"), occ("u", key="other")
    held = admit([mine, theirs, other_key], {("u", "k"): 3}, {}, {})
    assert set(held) == {mine.execution_id}


def test_a_candidate_never_overtakes_executions_held_before_it() -> None:
    first = occ()
    assert set(admit([first], {("u", "k"): 2}, {("u", "k"): 1}, {})) == {first.execution_id}
    assert admit([first], {("u", "k"): 2}, {}, {}) == {}


def test_max_running_caps_the_tenant_across_keys_and_unkeyed_jobs() -> None:
    batch = [occ(key=None), occ(key="a"), occ(key="b"), occ(key=None)]
    held = admit(batch, {("u", None): 6}, {}, {"u": 8})
    assert list(held) == [batch[2].execution_id, batch[3].execution_id]
    assert "max_running (8)" in held[batch[2].execution_id]
    # Other tenants and jobs without a key are not gated at all.
    assert admit([occ("v", key=None)], {("v", None): 10_000}, {}, {"u": 1}) == {}


async def test_a_bad_concurrency_over_kafka_is_dead_lettered_naming_the_field() -> None:
    topics = catalog(KafkaSettings(namespace="t.", command_partitions=3, due_partitions=3))
    sender = RecordingSender()
    handler = CommandHandler(
        shards=cast(Shards, None),  # a refused record never reaches a shard
        pool=cast(Any, None),
        sender=sender,
        catalog=topics,
        settings=SchedulerSettings(),
    )
    for concurrency, field in [
        ({"key": "k", "limit": 0}, "concurrency.limit"),
        ({"key": "k" * 129, "limit": 2}, "concurrency.key"),
    ]:
        job = {
            "user_id": "u",
            "name": "n",
            "schedule": {"type": "once", "at": (AT + timedelta(days=3650)).isoformat()},
            "target": {"type": "http", "url": "https://example.com/hook"},
            "concurrency": concurrency,
        }
        value = json.dumps({"type": "create", "job": job}).encode()
        home = partition_for(b"u", topics.commands.partitions)
        record = Record(topics.commands.name, home, 7, b"u", value)
        assert await handler.handle(record) == "rejected"
        topic, _, _, headers = sender.sent[-1]
        assert topic == topics.dlq.name
        assert field in headers[REASON].decode()


def test_kjs_jobs_create_takes_a_concurrency_flag() -> None:
    assert parse_concurrency("reports:3") == {"key": "reports", "limit": 3}
    assert parse_concurrency("db:eu:1") == {"key": "db:eu", "limit": 1}
    for bad in ("reports", "reports:", ":3", "reports:three"):
        with pytest.raises(UsageError, match="KEY:LIMIT"):
            parse_concurrency(bad)


def test_kjs_jobs_get_shows_the_concurrency() -> None:
    job = JobView.model_validate(
        {
            "job_id": str(uuid.uuid4()),
            "user_id": "u",
            "name": "nightly",
            "status": "scheduled",
            "next_run_at": AT.isoformat(),
            "run_count": 0,
            "created_at": AT.isoformat(),
            "schedule": {"type": "cron", "expression": "0 2 * * *"},
            "target": {"type": "http", "url": "https://example.com/run"},
            "priority": "normal",
            "retry": {},
            "idempotency_key": None,
            "concurrency": {"key": "reports", "limit": 3},
            "last_execution": None,
        }
    )
    assert "reports: 3 at once" in job_summary(job, AT)
    assert "concurrency" not in job_summary(job.model_copy(update={"concurrency": None}), AT)

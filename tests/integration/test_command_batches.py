"""scheduler.command_batches: a batch of command records against the real Postgres and Kafka.

The shards here are real (epochs claimed in Postgres, timers running), in a database of this
module's own, so that claiming shards 0..2 does not fence the session's other schedulers.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from core.db import create_pool
from core.quotas import Quotas
from core.settings import QuotaLimits, SchedulerSettings, SecuritySettings
from scheduler.command_batches import CommandBatches
from scheduler.commands import CommandHandler
from scheduler.firing import Dispatcher
from scheduler.kafka_io import ProducerSender
from scheduler.records import Record
from scheduler.shards import Shards
from scheduler.store.shards import claim_shard
from tests.conftest import RUN_ID, fresh_database
from topics.catalog import Catalog
from topics.partitioner import partition_for
from topics.producer import durable_producer

pytestmark = pytest.mark.services
LIMITED = "limited-tenant"


@pytest.fixture
async def batches(
    services: None, topic_catalog: Catalog, kafka_settings: Any
) -> AsyncIterator[tuple[CommandBatches, asyncpg.Pool]]:
    from core.settings import DatabaseSettings

    async with fresh_database(f"kjs_test_{RUN_ID}_batches_{uuid.uuid4().hex[:6]}") as dsn:
        pool = await create_pool(DatabaseSettings(), dsn=dsn)
        producer = durable_producer(kafka_settings)
        await producer.start()
        sender = ProducerSender(producer)
        shards = Shards(pool, Dispatcher(pool, sender, topic_catalog), SchedulerSettings(), "t")
        await shards.assign(range(topic_catalog.commands.partitions))
        quotas = Quotas(
            SecuritySettings(
                quota_tenant_tiers={LIMITED: "one"}, quota_tiers={"one": QuotaLimits(active_jobs=1)}
            )
        )
        handler = CommandHandler(
            shards, pool, sender, topic_catalog, SchedulerSettings(), quotas=quotas
        )
        try:
            yield CommandBatches(handler), pool
        finally:
            await shards.stop()
            await producer.stop()
            await pool.close()


def create(user_id: str, name: str, *, in_s: float = 3600, **job: Any) -> dict[str, Any]:
    at = datetime.now(UTC) + timedelta(seconds=in_s)
    return {
        "type": "create",
        "job": {
            "user_id": user_id,
            "name": name,
            "schedule": {"type": "once", "at": at.isoformat()},
            "target": {"type": "kafka", "topic": "out"},
            **job,
        },
    }


class Records:
    """Records as the command topic would hold them: on their key's partition, in order."""

    def __init__(self, cat: Catalog) -> None:
        self.cat = cat
        self.offset = 0

    def __call__(self, user_id: str, value: dict[str, Any] | bytes) -> Record:
        self.offset += 1
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        key = user_id.encode()
        home = partition_for(key, self.cat.commands.partitions)
        return Record(self.cat.commands.name, home, self.offset, key, raw)


async def test_plain_creates_in_bulk_and_the_rest_in_order(
    batches: tuple[CommandBatches, asyncpg.Pool], topic_catalog: Catalog
) -> None:
    handler, pool = batches
    rec = Records(topic_catalog)
    a, b = "tenant-a", "tenant-b"
    first = create(a, "first", idempotency_key="k-1")
    job_id = str(uuid.uuid4())
    records = [
        rec(a, first),
        rec(a, first),  # the same submission again: one job
        rec(b, create(b, "bulk-1")),
        rec(a, create(a, "mine", job_id=job_id)),
        rec(a, {"type": "cancel", "user_id": a, "job_id": job_id}),  # after its create
        rec(b, create(b, "too-late", in_s=-3600)),  # refused, dead-lettered
        rec(b, b"not json"),
        rec(b, create(b, "bulk-2")),
        rec(LIMITED, create(LIMITED, "counted")),  # a quota: the one-by-one path
        rec(LIMITED, create(LIMITED, "over")),
    ]

    outcomes = await handler.handle_batch(records)

    assert Counter(outcomes) == {"created": 5, "duplicate": 1, "cancelled": 1, "rejected": 3}
    rows = {
        r["name"]: r["status"]
        for r in await pool.fetch("SELECT name, status FROM kjs_jobs ORDER BY name")
    }
    assert rows == {
        "first": "scheduled",
        "bulk-1": "scheduled",
        "bulk-2": "scheduled",
        "mine": "cancelled",
        "counted": "scheduled",
    }
    # The bulk rows are the same rows the one-by-one path writes.
    row = await pool.fetchrow("SELECT * FROM kjs_jobs WHERE name = 'bulk-1'")
    assert row["shard"] == partition_for(b.encode(), topic_catalog.commands.partitions)
    assert row["source"] == records[2].source
    assert row["target"] == {
        "type": "kafka",
        "topic": "out",
        "key": None,
        "value": None,
        "headers": {},
        "timeout_s": 10.0,
    }
    # Redelivered (a consumer that restarted before committing): nothing new.
    again = await handler.handle_batch(records[:4])
    assert Counter(again) == {"duplicate": 4}


async def test_a_shard_that_moved_does_not_stop_the_others(
    batches: tuple[CommandBatches, asyncpg.Pool], topic_catalog: Catalog
) -> None:
    handler, pool = batches
    rec = Records(topic_catalog)
    users = {}
    for n in range(50):  # one tenant per partition
        users.setdefault(rec(f"u{n}", b"").partition, f"u{n}")
    assert len(users) >= 2
    moved, kept = sorted(users)[:2]
    await claim_shard(pool, moved, "another-instance")  # fences this one's epoch

    outcomes = await handler.handle_batch(
        [
            rec(users[moved], create(users[moved], "lost")),
            rec(users[kept], create(users[kept], "ok")),
        ]
    )

    assert Counter(outcomes) == {"fenced": 1, "created": 1}
    assert await pool.fetchval("SELECT array_agg(name) FROM kjs_jobs") == ["ok"]

"""``kjs shards resize`` on a real broker and Postgres, without schedulers: the plan, the
refusals (nothing changed), and a run stopped after a step that a re-run finishes. The
whole stack under a resize (jobs due, a scheduler killed) is tests/faults/test_resize.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from core.db import create_pool
from core.queries import QUERIES
from core.settings import DatabaseSettings, KafkaSettings, SchedulerSettings
from kjs.cli import main
from scheduler.commands import CommandHandler
from scheduler.firing import Dispatcher
from scheduler.kafka_io import ProducerSender
from scheduler.records import Record
from scheduler.resize import Outcome, resize
from scheduler.results import ResultHandler
from scheduler.shards import Shards
from scheduler.store.jobs import insert_jobs
from scheduler.store.shards import Fenced, claim_shard, fenced, reclaim_resized_shard
from schemas.v1.events import ResultEvent
from tests.conftest import fresh_database
from tests.integration.test_store_constraints import new_job
from tests.support.waiting import eventually
from topics.admin import create_topics, topic_partitions
from topics.catalog import Catalog, catalog
from topics.partitioner import partition_for
from topics.producer import durable_producer
from topics.security import aiokafka_config

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

BEFORE, AFTER = 6, 12
USERS = [f"tenant-{i}" for i in range(40)]
LATER = datetime(2035, 1, 1, tzinfo=UTC)


@dataclass
class Installation:
    dsn: str
    kafka: KafkaSettings
    catalog: Catalog
    conn: asyncpg.Connection
    epochs: dict[int, int]  # what the schedulers held before the resize

    async def partitions(self) -> dict[str, int]:
        names = [self.catalog.commands.name, self.catalog.results.name]
        return await topic_partitions(self.kafka, names)

    async def job_shards(self) -> dict[str, int]:
        rows = await self.conn.fetch("SELECT user_id, shard FROM kjs_jobs")
        return {r["user_id"]: r["shard"] for r in rows}

    async def resizes(self) -> list[asyncpg.Record]:
        return await self.conn.fetch("SELECT * FROM kjs_resizes")


@pytest.fixture
async def installation(
    services: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Installation]:
    """Six shards, one job per tenant on its shard, the CLI's environment pointing at them."""
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(namespace=f"r{run}.", command_partitions=BEFORE, due_partitions=3)
    cat = catalog(kafka)
    await create_topics(kafka, cat)
    async with fresh_database(f"kjs_resize_{run}") as dsn:
        pool = await create_pool(DatabaseSettings(), dsn=dsn)
        epochs = {s: await claim_shard(pool, s, "old-owner") for s in range(BEFORE)}
        for user in USERS:
            shard = partition_for(user.encode(), BEFORE)
            await insert_jobs(pool, shard, epochs[shard], [new_job(shard, user)])
        await pool.close()
        monkeypatch.setenv("KJS_DATABASE_URL", dsn)
        monkeypatch.setenv("KJS_KAFKA_BOOTSTRAP", kafka.kafka_bootstrap)
        monkeypatch.setenv("KJS_NAMESPACE", kafka.namespace)
        monkeypatch.setenv("KJS_COMMAND_PARTITIONS", str(BEFORE))
        conn = await asyncpg.connect(dsn)
        try:
            yield Installation(dsn, kafka, cat, conn, epochs)
        finally:
            await conn.close()


async def _resize(*args: str) -> int:
    """``kjs shards resize ...`` as the command line runs it (its own event loop)."""
    return await asyncio.to_thread(main, ["shards", "resize", *args])


async def _unchanged(inst: Installation) -> None:
    assert await inst.partitions() == {inst.catalog.commands.name: 6, inst.catalog.results.name: 6}
    assert await inst.job_shards() == {u: partition_for(u.encode(), BEFORE) for u in USERS}
    epochs = await inst.conn.fetch("SELECT shard, epoch FROM kjs_shards")
    assert {r["shard"]: r["epoch"] for r in epochs} == inst.epochs
    assert await inst.resizes() == []


async def test_the_dry_run_prints_the_plan_and_changes_nothing(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    moving = sum(
        partition_for(u.encode(), AFTER) != partition_for(u.encode(), BEFORE) for u in USERS
    )
    assert 0 < moving < len(USERS)
    assert await _resize("--partitions", str(AFTER), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry run, nothing changed" in out
    assert "resize from 6 to 12 partitions" in out
    assert f"move {moving} of {len(USERS)} jobs" in out
    await _unchanged(installation)


@pytest.mark.parametrize(
    ("partitions", "reason"),
    [
        (4, "cannot shrink"),
        (6, "has 6 partitions already"),
    ],
)
async def test_shrinking_or_keeping_the_count_is_refused(
    installation: Installation, capsys: pytest.CaptureFixture[str], partitions: int, reason: str
) -> None:
    assert await _resize("--partitions", str(partitions)) == 2
    err = capsys.readouterr().err
    assert err.startswith("kjs: refusing to resize: ") and reason in err
    if partitions < BEFORE:
        assert "Kafka cannot remove" in err
    await _unchanged(installation)


async def test_a_resize_while_another_runs_is_refused(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    other = await asyncpg.connect(installation.dsn)  # the running resize holds the lock
    try:
        assert await other.fetchval(QUERIES["resize_try_lock"])
        assert await _resize("--partitions", str(AFTER)) == 2
    finally:
        await other.close()
    assert "another resize is running" in capsys.readouterr().err
    await _unchanged(installation)


@pytest.mark.parametrize("crash_after", ["started", "grown", "moved"])
async def test_an_interrupted_resize_is_finished_by_a_rerun(
    installation: Installation, capsys: pytest.CaptureFixture[str], crash_after: str
) -> None:
    inst = installation
    assert (
        await _resize("--partitions", str(AFTER), "--stop-after", crash_after, "--wait", "0") == 3
    )
    assert "run it again" in capsys.readouterr().err
    [row] = await inst.resizes()
    assert row["step"] == crash_after and row["finished_at"] is None
    # Another count while it is unfinished: refused, and it still is.
    assert await _resize("--partitions", "8") == 2
    assert "interrupted resize from 6 to 12 partitions is unfinished" in capsys.readouterr().err
    assert await _resize("--partitions", str(AFTER), "--wait", "0") == 0
    out = capsys.readouterr().out
    assert "resized to 12 partitions" in out
    assert await inst.partitions() == {
        inst.catalog.commands.name: 12,
        inst.catalog.results.name: 12,
    }
    assert await inst.job_shards() == {u: partition_for(u.encode(), AFTER) for u in USERS}
    [row] = await inst.resizes()
    assert (row["from_partitions"], row["to_partitions"], row["step"]) == (6, 12, "done")
    # Every shard is fenced in the resize's name with the new count; the old owner's next
    # write is refused, and the instance Kafka assigns a shard to takes it back.
    shards = await inst.conn.fetch("SELECT shard, owner, partitions FROM kjs_shards ORDER BY shard")
    assert [(r["shard"], r["owner"], r["partitions"]) for r in shards] == [
        (s, "kjs resize", AFTER) for s in range(AFTER)
    ]
    pool = await create_pool(DatabaseSettings(), dsn=inst.dsn)
    try:
        with pytest.raises(Fenced):
            async with fenced(pool, 0, inst.epochs[0]):
                pass
        claim = await reclaim_resized_shard(pool, 0, "s1")
        assert claim is not None and claim.partitions == AFTER
        assert await reclaim_resized_shard(pool, 0, "s2") is None  # s1 has it now
    finally:
        await pool.close()
    # Done is done: the same resize again is refused as "already".
    assert await _resize("--partitions", str(AFTER)) == 2
    assert "has 12 partitions already" in capsys.readouterr().err


async def test_a_running_scheduler_takes_its_shards_back_and_routes_by_the_new_count(
    installation: Installation,
) -> None:
    """The scheduler side, in-process: shards 0..5 owned and idle (nothing to write), the
    resize fences them; the instance notices within a second, takes them back with the new
    count, and re-routes a result (and a command) that sits on its old-count partition."""
    inst = installation
    pool = await create_pool(DatabaseSettings(), dsn=inst.dsn)
    producer = durable_producer(inst.kafka)
    await producer.start()
    sender = ProducerSender(producer)
    shards = Shards(pool, Dispatcher(pool, sender, inst.catalog), SchedulerSettings(), "s1")
    try:
        await shards.assign(range(BEFORE))
        held = {s: o.epoch for s, o in shards.owned.items()}
        done = await resize(inst.dsn, inst.kafka, AFTER, resume_timeout_s=1.0)
        assert isinstance(done, Outcome)
        assert done.unclaimed == list(range(BEFORE, AFTER))  # nobody consumes 6..11 here

        async def taken_back() -> bool:
            owners = await inst.conn.fetch("SELECT shard, owner FROM kjs_shards WHERE shard < 6")
            return {r["owner"] for r in owners} == {"s1"}

        await eventually(taken_back, 10, interval_s=0.1, what="the shards taken back")
        assert shards.partitions == AFTER
        assert all(shards.owned[s].epoch > held[s] for s in held)
        user = next(u for u in USERS if partition_for(u.encode(), AFTER) >= BEFORE)
        old, new = partition_for(user.encode(), BEFORE), partition_for(user.encode(), AFTER)
        result = ResultEvent(
            execution_id=uuid.uuid4(),
            job_id=uuid.uuid4(),
            user_id=user,
            attempt=1,
            status="succeeded",
            started_at=LATER,
            finished_at=LATER,
            worker="w1",
        )
        record = Record(
            inst.catalog.results.name, old, 7, user.encode(), result.model_dump_json().encode()
        )
        handler = ResultHandler(shards, pool, sender, inst.catalog)
        assert await handler.handle_batch([record]) == ["rerouted"]
        landed = await _read(inst.kafka, inst.catalog.results.name, new)
        assert landed.key == user.encode() and landed.value == record.value
        commands = CommandHandler(shards, pool, sender, inst.catalog, SchedulerSettings())
        cancel = {"type": "cancel", "user_id": user, "job_id": str(uuid.uuid4())}
        command = Record(
            inst.catalog.commands.name, old, 3, user.encode(), json.dumps(cancel).encode()
        )
        assert await commands.handle(command) == "rerouted"
        assert (await _read(inst.kafka, inst.catalog.commands.name, new)).key == user.encode()
    finally:
        await shards.stop()
        await producer.stop()
        await pool.close()


async def _read(kafka: KafkaSettings, topic: str, partition: int) -> Any:
    """The first record of one partition."""
    consumer = AIOKafkaConsumer(**aiokafka_config(kafka), auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        return await asyncio.wait_for(consumer.getone(tp), 30)
    finally:
        await consumer.stop()

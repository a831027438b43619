"""End to end: submit over HTTP or Kafka, fire on time, run against a real target, show status."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import signal
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer

from scheduler.commands import REROUTED_FROM
from tests.conftest import make_api_key
from tests.support.stack import Stack
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually
from topics.dlq import REASON
from topics.partitioner import partition_for

pytestmark = pytest.mark.services

# The worker holds a due event until the scheduled instant; a hit may land a hair before
# it only by the clock resolution of asyncio's timer.
CLOCK_SLACK = timedelta(milliseconds=20)


def once_job(user_id: str, url: str, in_s: float, **extra: Any) -> dict[str, Any]:
    at = datetime.now(UTC) + timedelta(seconds=in_s)
    return {
        "user_id": user_id,
        "name": "skeleton",
        "schedule": {"type": "once", "at": at.isoformat()},
        "target": {"type": "http", "method": "POST", "url": url, "body": {"hello": "kjs"}},
        **extra,
    }


async def test_http_submit_fires_on_time_and_shows_success(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    body = once_job(user_id, target.url(user_id), in_s=2)
    accepted = await stack.submit(body)
    job_id = accepted["job_id"]
    assert accepted["status"] == "accepted"

    job = await stack.wait_status(job_id, "succeeded")
    hits = target.calls(user_id)
    assert len(hits) == 1
    at = datetime.fromisoformat(body["schedule"]["at"])
    assert hits[0].at >= at - CLOCK_SLACK, "fired before its time"
    assert json.loads(hits[0].body) == {"hello": "kjs"}

    executions = await stack.executions(job_id)
    assert len(executions) == 1
    assert executions[0]["status"] == "succeeded"
    assert executions[0]["http_status"] == 200
    assert hits[0].headers["Idempotency-Key"] == executions[0]["execution_id"]
    assert job["last_execution"]["execution_id"] == executions[0]["execution_id"]


def misplaced_tenant(base: str, partitions: int) -> str:
    """A tenant (``base-N``) whose key librdkafka's default partitioner (``consistent_random``:
    CRC32 of the key) puts on another partition than murmur2 does. A random tenant would be
    on its murmur2 partition by chance one time in ``partitions``, and re-route nothing."""
    for n in itertools.count():
        tenant = f"{base}-{n}"
        key = tenant.encode()
        if zlib.crc32(key) % partitions != partition_for(key, partitions):
            return tenant
    raise AssertionError("unreachable")


async def act_as(stack: Stack, tenant: str) -> None:
    """Read the API as ``tenant`` (the autouse fixture restores the test's own key)."""
    assert stack.http is not None
    stack.http.headers["Authorization"] = f"Bearer {await make_api_key(stack.pool, tenant)}"


async def record_at(stack: Stack, partition: int, offset: int) -> Any:
    """The record of jobs.commands at ``partition``/``offset``."""
    tp = TopicPartition(stack.catalog.commands.name, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert record.offset == offset
    return record


async def assert_applied_from(
    stack: Stack, job_id: str, tenant: str, sent_to: tuple[int, int] | None
) -> tuple[int, int]:
    """Where the command the shard applied for ``job_id`` came from: (partition, offset) of
    jobs.commands. It is always the tenant's murmur2 partition (the shard that owns the
    tenant applied it); when the producer put the record elsewhere (``sent_to``, or the
    original named by the re-routed copy's header), the scheduler re-produced it there.
    Returns where the producer put it."""
    partitions = stack.catalog.commands.partitions
    home = partition_for(tenant.encode(), partitions)
    row = await stack.pool.fetchrow(
        "SELECT shard, source FROM kjs_jobs WHERE job_id = $1::uuid", job_id
    )
    topic = stack.catalog.commands.name
    prefix = f"kafka:{topic}/"
    assert row["shard"] == home and row["source"].startswith(prefix), dict(row)
    partition, offset = (int(x) for x in row["source"][len(prefix) :].split("/"))
    assert partition == home, f"applied from {row['source']}, not the murmur2 partition {home}"
    applied = await record_at(stack, partition, offset)
    assert applied.key == tenant.encode()
    rerouted_from = dict(applied.headers).get(REROUTED_FROM)
    if rerouted_from is None:
        original = (partition, offset)
    else:
        assert rerouted_from.decode().startswith(prefix), rerouted_from
        p, o = (int(x) for x in rerouted_from.decode()[len(prefix) :].split("/"))
        original = (p, o)
        first = await record_at(stack, p, o)
        assert first.key == tenant.encode() and REROUTED_FROM not in dict(first.headers)
        assert json.loads(first.value)["job"]["job_id"] == job_id
    if sent_to is not None:
        assert original == sent_to, (original, sent_to)
    return original


@pytest.mark.parametrize("partitioner", ["murmur2_random", "consistent_random"])
async def test_kafka_submit_fires_even_from_a_crc32_producer(
    stack: Stack, target: RecordingTarget, user_id: str, partitioner: str
) -> None:
    """librdkafka's default (consistent_random, CRC32) puts keys elsewhere: kjs re-routes."""
    partitions = stack.catalog.commands.partitions
    tenant = misplaced_tenant(user_id, partitions)
    crc32, murmur2 = (
        zlib.crc32(tenant.encode()) % partitions,
        partition_for(tenant.encode(), partitions),
    )
    await act_as(stack, tenant)
    job_id = "3f0f6a5e-1111-4a4a-9b9b-" + user_id[-12:].rjust(12, "0")
    command = {
        "type": "create",
        "job": {**once_job(tenant, target.url(tenant), 2), "job_id": job_id},
    }
    producer = Producer(
        {"bootstrap.servers": stack.env["KJS_KAFKA_BOOTSTRAP"], "partitioner": partitioner}
    )
    delivered: list[tuple[int, int]] = []
    producer.produce(
        stack.catalog.commands.name,
        key=tenant.encode(),
        value=json.dumps(command).encode(),
        on_delivery=lambda err, msg: delivered.append((msg.partition(), msg.offset())),
    )
    assert producer.flush(10) == 0

    await stack.wait_status(job_id, "succeeded")
    assert len(target.calls(tenant)) == 1
    sent_to = await assert_applied_from(stack, job_id, tenant, delivered[0])
    if partitioner == "murmur2_random":
        assert sent_to[0] == murmur2, "a murmur2 producer needs no re-route"
    else:
        assert sent_to[0] == crc32 != murmur2, "the record was not on a wrong partition"


async def test_kafka_submit_from_kcat_a_non_python_client(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    """kcat (librdkafka, C) with its default partitioner, as a shell user would submit."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is installed by .ci/run (apt-get install kcat)"
    partitions = stack.catalog.commands.partitions
    tenant = misplaced_tenant(user_id, partitions)
    await act_as(stack, tenant)
    job_id = "7c0a0000-3333-4c4c-8d8d-" + user_id[-12:].rjust(12, "0")
    command = {
        "type": "create",
        "job": {**once_job(tenant, target.url(tenant), 2), "job_id": job_id},
    }
    proc = await asyncio.create_subprocess_exec(
        kcat,
        "-P",
        "-b",
        stack.env["KJS_KAFKA_BOOTSTRAP"],
        "-t",
        stack.catalog.commands.name,
        "-k",
        tenant,
        stdin=asyncio.subprocess.PIPE,
    )
    await proc.communicate(json.dumps(command).encode() + b"\n")
    assert proc.returncode == 0

    await stack.wait_status(job_id, "succeeded")
    assert len(target.calls(tenant)) == 1
    sent_to = await assert_applied_from(stack, job_id, tenant, None)
    crc32 = zlib.crc32(tenant.encode()) % partitions
    assert sent_to[0] == crc32 != partition_for(tenant.encode(), partitions), (
        "kcat's record was not on a wrong partition: nothing was re-routed"
    )


async def test_cancel_before_fire_time_never_calls_the_target(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    job_id = (await stack.submit(once_job(user_id, target.url(user_id), in_s=4)))["job_id"]
    await eventually(lambda: stack.job(job_id), what="the job to be stored")
    async with stack.http.delete(f"{stack.api_url}/v1/jobs/{job_id}") as resp:
        assert resp.status == 202
    await stack.wait_status(job_id, "cancelled")

    # A later job of the same tenant fires after the cancelled one's time: once it ran,
    # the cancelled one had its chance to (wrongly) run too.
    marker = f"{user_id}-marker"
    marker_id = (await stack.submit(once_job(user_id, target.url(marker), in_s=5)))["job_id"]
    await stack.wait_status(marker_id, "succeeded")
    assert target.calls(user_id) == []
    async with stack.http.delete(f"{stack.api_url}/v1/jobs/{job_id}") as resp:
        assert resp.status == 409


async def test_recurring_job_fires_on_consecutive_ticks(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    body = {
        "user_id": user_id,
        "name": "every-second",
        "schedule": {"type": "cron", "expression": "* * * * * *", "timezone": "Europe/Berlin"},
        "target": {"type": "http", "method": "GET", "url": target.url(user_id)},
    }
    job_id = (await stack.submit(body))["job_id"]

    async def three_hits() -> bool:
        return len(target.calls(user_id)) >= 3

    await eventually(three_hits, what="three ticks")
    async with stack.http.delete(f"{stack.api_url}/v1/jobs/{job_id}") as resp:
        assert resp.status == 202
    await stack.wait_status(job_id, "cancelled")

    executions = await stack.executions(job_id)
    ticks = sorted(datetime.fromisoformat(e["scheduled_for"]) for e in executions)
    assert len(ticks) == len(set(ticks)), "an occurrence fired twice"
    assert all(t.microsecond == 0 for t in ticks), "cron ticks fall on whole seconds"
    steps = {(b - a).total_seconds() for a, b in itertools.pairwise(ticks)}
    assert steps == {1.0}, f"ticks were not consecutive seconds: {steps}"
    keys = [h.headers["Idempotency-Key"] for h in target.calls(user_id)]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_scheduler_restart_between_submit_and_fire_still_fires_once(
    stack: Stack, target: RecordingTarget, user_id: str, sig: int
) -> None:
    job_id = (await stack.submit(once_job(user_id, target.url(user_id), in_s=4)))["job_id"]
    await eventually(lambda: stack.job(job_id), what="the job to be stored")
    restarted = datetime.now(UTC)
    await stack.restart("scheduler", sig)
    await stack.wait_shards_owned(restarted)

    await stack.wait_status(job_id, "succeeded", timeout_s=60)
    assert len(target.calls(user_id)) == 1
    assert len(await stack.executions(job_id)) == 1


async def test_poison_record_goes_to_dlq_and_the_partition_keeps_flowing(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    topic = stack.catalog.commands.name
    partition = partition_for(user_id.encode(), stack.catalog.commands.partitions)
    producer = Producer(
        {"bootstrap.servers": stack.env["KJS_KAFKA_BOOTSTRAP"], "partitioner": "murmur2_random"}
    )
    poison = b'{"type": "create", "job": {"user_id": ' + user_id.encode()
    producer.produce(topic, key=user_id.encode(), value=poison, partition=partition)
    job_id = "5a1e0000-2222-4b4b-8c8c-" + user_id[-12:].rjust(12, "0")
    good = {
        "type": "create",
        "job": {**once_job(user_id, target.url(user_id), 1), "job_id": job_id},
    }
    producer.produce(
        topic, key=user_id.encode(), value=json.dumps(good).encode(), partition=partition
    )
    assert producer.flush(10) == 0

    await stack.wait_status(job_id, "succeeded")
    consumer = AIOKafkaConsumer(
        stack.catalog.dlq.name,
        bootstrap_servers=stack.env["KJS_KAFKA_BOOTSTRAP"],
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:

        async def dead_letter() -> dict[str, bytes] | None:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    if rec.value == poison:
                        return dict(rec.headers)
            return None

        headers = await eventually(dead_letter, what="the poison record in the DLQ")
    finally:
        await consumer.stop()
    assert b"Invalid JSON" in headers[REASON] or b"EOF" in headers[REASON]
    assert headers["kjs-source-topic"] == topic.encode()

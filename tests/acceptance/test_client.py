"""``kjs.client`` against the whole running stack: every method, its typed refusals, the Kafka
helper, and the example module."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from api.handlers_schedules import PreviewResponse
from api.models import CancelAccepted, ExecutionDetail, JobPage, JobView, LifecycleAccepted
from core.settings import KafkaSettings
from kjs.client import (
    ApiError,
    ApiUnreachable,
    Client,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from kjs.client.kafka import submit_via_kafka
from schemas.v1.commands import JobChanges
from schemas.v1.ids import job_id_for_key
from schemas.v1.jobs import JobSpec, JobSubmission
from schemas.v1.schedules import CronSchedule
from tests.acceptance.conftest import Stack, Target, free_port
from tests.conftest import make_api_key
from tests.waiting import eventually
from topics.partitioner import partition_for
from topics.producer import durable_producer

pytestmark = pytest.mark.services


@pytest.fixture
async def key(stack: Stack, user_id: str) -> str:
    return await make_api_key(stack.pool, user_id)


@pytest.fixture
async def client(stack: Stack, key: str) -> AsyncIterator[Client]:
    async with Client(stack.api_url, key) as c:
        yield c


def http_job(user_id: str | None, url: str, **schedule: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "client",
        "schedule": schedule or {"type": "interval", "every_seconds": 3600},
        "target": {"type": "http", "method": "GET", "url": url},
    }
    if user_id is not None:
        body["user_id"] = user_id
    return body


def soon(seconds: float = 1.0) -> dict[str, Any]:
    return {"type": "once", "at": (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()}


async def stored(client: Client, job_id: uuid.UUID, status: str | None = None) -> JobView:
    """The job once the owning shard stored it (and, given ``status``, once it has it)."""

    async def probe() -> JobView | None:
        try:
            job = await client.get(job_id)
        except NotFound:
            return None
        return job if status is None or job.status == status else None

    return await eventually(probe, what=f"job {job_id} stored" + (f" {status}" if status else ""))


async def test_every_method(stack: Stack, target: Target, client: Client, user_id: str) -> None:
    spec = JobSpec.model_validate(http_job(user_id, target.url(user_id), **soon()))
    accepted = await client.create(spec)
    assert accepted.status == "accepted"
    job = await stored(client, accepted.job_id, "succeeded")
    assert (job.user_id, job.name, job.run_count) == (user_id, "client", 1)

    page = await client.runs(job.job_id)
    (run,) = page.executions
    assert (run.status, run.http_status, page.next_cursor) == ("succeeded", 200, None)
    assert [r.execution_id async for r in client.iter_runs(job.job_id, page_size=1)] == [
        run.execution_id
    ]
    detail = await client.execution(run.execution_id)
    assert isinstance(detail, ExecutionDetail)
    assert (detail.job_id, detail.user_id, detail.http_status) == (job.job_id, user_id, 200)
    assert detail.output_excerpt is not None and '"ok": true' in detail.output_excerpt

    # Two more, then the listing: newest first, one page at a time or all of them.
    later = [(await client.create(http_job(user_id, target.url(user_id)))).job_id for _ in "ab"]
    for job_id in later:
        await stored(client, job_id)
    listed = await client.list_jobs(user_id=user_id, limit=2)
    assert isinstance(listed, JobPage)
    assert [j.job_id for j in listed.jobs] == later[::-1]
    assert listed.next_cursor is not None
    rest = await client.list_jobs(user_id=user_id, limit=2, cursor=listed.next_cursor)
    assert ([j.job_id for j in rest.jobs], rest.next_cursor) == ([job.job_id], None)
    every = [j.job_id async for j in client.iter_jobs(user_id=user_id, page_size=1)]
    assert every == [*later[::-1], job.job_id]
    finished = await client.list_jobs(user_id=user_id, status="succeeded")
    assert [j.job_id for j in finished.jobs] == [job.job_id]

    job_id = later[0]
    paused = await client.pause(job_id)
    assert (paused.job_id, paused.action, paused.status) == (job_id, "pause", "accepted")
    await stored(client, job_id, "paused")
    with pytest.raises(Conflict) as conflict:
        await client.pause(job_id)
    assert (conflict.value.status, conflict.value.job_status) == (409, "paused")
    assert conflict.value.message == "cannot pause a job that is paused"

    assert (await client.trigger(job_id)).action == "trigger"
    await eventually(lambda: _runs_of(client, job_id, 1), what="the triggered run")

    moved = CronSchedule(type="cron", expression="15 4 * * *", timezone="Asia/Kolkata")
    updated = await client.update(job_id, JobChanges(name="renamed", schedule=moved))
    assert isinstance(updated, LifecycleAccepted) and updated.action == "update"
    assert (await client.update(job_id, {"priority": "low"})).action == "update"

    async def changed() -> JobView | None:
        job = await client.get(job_id)
        return job if job.name == "renamed" and job.priority == "low" else None

    renamed = await eventually(changed, what="the updates applied")
    assert renamed.schedule == moved and renamed.status == "paused"

    assert (await client.resume(job_id)).action == "resume"
    resumed = await stored(client, job_id, "scheduled")
    assert resumed.next_run_at is not None

    preview = await client.preview(renamed.schedule, count=2)
    assert isinstance(preview, PreviewResponse) and preview.timezone == "Asia/Kolkata"
    assert len(preview.fires) == 2 and preview.fires[0].utc == resumed.next_run_at
    from_ = datetime(2026, 3, 28, 12, tzinfo=UTC)
    berlin = {"type": "cron", "expression": "30 2 * * *", "timezone": "Europe/Berlin"}
    (fire,) = (await client.preview(berlin, count=1, from_=from_)).fires
    assert (fire.utc, fire.shifted) == (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), True)

    cancelled = await client.cancel(job_id)
    assert isinstance(cancelled, CancelAccepted) and cancelled.status == "cancelling"
    await stored(client, job_id, "cancelled")
    with pytest.raises(Conflict) as again:
        await client.cancel(job_id)
    assert again.value.job_status == "cancelled"
    await client.cancel(later[1])


async def _runs_of(client: Client, job_id: uuid.UUID, n: int) -> bool:
    page = await client.runs(job_id)
    return sum(1 for e in page.executions if e.status == "succeeded") >= n


async def test_refusals_are_typed(
    stack: Stack, target: Target, client: Client, user_id: str
) -> None:
    with pytest.raises(NotFound) as missing:
        await client.get(uuid.uuid4())
    assert (missing.value.status, missing.value.message) == (404, "job not found")
    assert str(missing.value) == "404 Not Found: job not found"
    with pytest.raises(NotFound):
        await client.execution(str(uuid.uuid4()))
    for call in (client.runs, client.cancel, client.pause, client.resume, client.trigger):
        with pytest.raises(NotFound):
            await call(uuid.uuid4())
    with pytest.raises(ValueError, match="not a job id"):
        await client.get("../healthz")

    with pytest.raises(Forbidden) as forbidden:
        await client.create(http_job(f"{user_id}-other", target.url(user_id)))
    assert forbidden.value.status == 403
    assert forbidden.value.message.startswith(f"not allowed for user_id '{user_id}-other'")
    with pytest.raises(Forbidden):
        await client.list_jobs(user_id=f"{user_id}-other")

    bad = http_job(user_id, "not a url", type="cron", expression="61 * * * *")
    with pytest.raises(InvalidRequest) as invalid:
        await client.create(bad)
    assert invalid.value.status == 422
    assert {field for field, _ in invalid.value.errors} == {"schedule.expression", "target.url"}
    assert "not a valid 5- or 6-field cron expression" in invalid.value.message
    with pytest.raises(InvalidRequest) as empty:
        await client.update(uuid.uuid4(), {})
    assert empty.value.errors[0][1].startswith("an update must change at least one of")
    with pytest.raises(InvalidRequest) as too_many:
        await client.preview({"type": "interval", "every_seconds": 60}, count=100_000)
    assert [field for field, _ in too_many.value.errors] == ["count"]

    async with Client(stack.api_url, "kjs_not-a-key") as stranger:
        with pytest.raises(Unauthorized) as unauthorized:
            await stranger.list_jobs(user_id=user_id)
    assert unauthorized.value.status == 401 and unauthorized.value.message
    read_only = await make_api_key(stack.pool, user_id, ("read",))
    async with Client(stack.api_url, read_only) as reader:
        assert (await reader.list_jobs(user_id=user_id)).jobs == []
        with pytest.raises(Forbidden, match="lacks the write scope"):
            await reader.create(http_job(user_id, target.url(user_id)))

    closed = f"http://127.0.0.1:{free_port()}"
    async with Client(closed, "k") as nowhere:
        with pytest.raises(ApiUnreachable) as unreachable:
            await nowhere.list_jobs()
    assert unreachable.value.url == closed
    assert str(unreachable.value).startswith(f"cannot reach the kjs API at {closed}: ")
    assert not isinstance(unreachable.value, ApiError)
    # Nothing the refused submissions asked for exists.
    assert (await client.list_jobs(user_id=user_id)).jobs == []


async def test_create_without_user_id_is_the_keys_tenant(
    target: Target, client: Client, user_id: str
) -> None:
    accepted = await client.create(http_job(None, target.url(user_id)))
    job = await stored(client, accepted.job_id)
    assert job.user_id == user_id
    # A model without user_id is the key's tenant's job too.
    model = JobSubmission.model_validate(http_job(None, target.url(user_id)))
    second = await client.create(model)
    assert (await stored(client, second.job_id)).user_id == user_id
    listed = [j.job_id for j in (await client.list_jobs()).jobs]
    assert listed == [second.job_id, accepted.job_id]


async def _command_record(
    stack: Stack, job_id: uuid.UUID
) -> tuple[int, bytes | None, dict[str, Any]]:
    """The partition, key and value of the create command for ``job_id`` on jobs.commands."""
    consumer = AIOKafkaConsumer(
        stack.catalog.commands.name,
        bootstrap_servers=stack.env["KJS_KAFKA_BOOTSTRAP"],
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:

        async def read() -> tuple[int, bytes | None, dict[str, Any]] | None:
            batch = await consumer.getmany(timeout_ms=300)
            for tp, records in batch.items():
                for rec in records:
                    value = json.loads(rec.value or b"{}")
                    if value.get("job", {}).get("job_id") == str(job_id):
                        return tp.partition, rec.key, value
            return None

        return await eventually(read, what=f"the create command of {job_id}")
    finally:
        await consumer.stop()


def _telling(tenant: str, partitions: int) -> bool:
    """Whether ``tenant``'s murmur2 partition differs from partition 0 and from librdkafka's
    default (CRC32), so a record placed by either of those would be on another partition."""
    key = tenant.encode()
    murmur = partition_for(key, partitions)
    return murmur != 0 and murmur != zlib.crc32(key) % partitions


async def test_kafka_helper_creates_a_job_the_stack_runs(
    stack: Stack, target: Target, user_id: str, kafka_settings: KafkaSettings
) -> None:
    partitions = stack.catalog.commands.partitions
    tenant = next(t for t in (f"{user_id}.{i}" for i in range(1000)) if _telling(t, partitions))
    async with Client(stack.api_url, await make_api_key(stack.pool, tenant)) as client:
        spec = http_job(tenant, target.url(tenant), **soon(1))
        job_id = await submit_via_kafka(spec, kafka=kafka_settings)
        job = await stored(client, job_id, "succeeded")
        assert (job.user_id, job.name, len(target.calls(tenant))) == (tenant, "client", 1)

        partition, key, command = await _command_record(stack, job_id)
        assert key == tenant.encode()
        assert partition == partition_for(key, partitions), "not the tenant's shard's partition"
        assert command["type"] == "create" and command["job"]["user_id"] == tenant

        # A producer the caller already has, and an idempotency key: the same job both times.
        keyed = JobSpec.model_validate(
            {**http_job(tenant, target.url(f"{tenant}-keyed")), "idempotency_key": "nightly"}
        )
        producer = durable_producer(kafka_settings)
        await producer.start()
        try:
            first = await submit_via_kafka(keyed, producer=producer, kafka=kafka_settings)
            second = await submit_via_kafka(keyed, producer=producer, kafka=kafka_settings)
        finally:
            await producer.stop()
        assert first == second == job_id_for_key(tenant, "nightly")
        await stored(client, first, "scheduled")
        jobs = [j.job_id async for j in client.iter_jobs()]
        assert sorted(map(str, jobs)) == sorted([str(job_id), str(first)])
        await client.cancel(first)


async def test_the_example_module_runs_a_job(
    stack: Stack, target: Target, user_id: str, key: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
    env.update(KJS_API_URL=stack.api_url, KJS_API_KEY=key)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kjs.client.example",
        target.url(user_id),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, (out.decode(), err.decode())
    lines = out.decode().splitlines()
    assert lines[0].startswith("created job ")
    job_id = lines[0].split()[2].rstrip(",")
    assert lines[1] == f"job {job_id} ({user_id}) succeeded after 1 run(s)"
    assert "attempt 1  succeeded  http 200" in lines[2]
    assert len(target.calls(user_id)) == 1


async def test_wait_stored_returns_the_job_once_its_shard_stored_it(
    target: Target, client: Client, user_id: str
) -> None:
    accepted = await client.create(http_job(user_id, target.url(user_id)))

    job = await client.wait_stored(accepted.job_id, timeout_s=30)

    assert job is not None and job.job_id == accepted.job_id
    # A job that is never created is not waited for beyond the deadline.
    assert await client.wait_stored(uuid.uuid4(), timeout_s=0.2) is None

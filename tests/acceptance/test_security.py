"""Security through the running system: quotas on both doors, and the SSRF guard in the worker.

The stack's environment gives two tenants tight quota tiers (``QUOTA_ACTIVE_TENANT``: two
active jobs; ``QUOTA_RATE_TENANT``: a burst of two submissions, then almost none) and lets
only 127.0.0.1 through the HTTP target guard.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from tests.acceptance.conftest import QUOTA_ACTIVE_TENANT, QUOTA_RATE_TENANT, Stack, Target
from tests.acceptance.test_walking_skeleton import once_job
from tests.conftest import bearer, make_api_key
from tests.waiting import eventually
from topics.dlq import REASON

pytestmark = pytest.mark.services


def parked(user_id: str, job_id: str) -> dict[str, Any]:
    """A create command for a job that stays active (next run in an hour)."""
    return {
        "type": "create",
        "job": {
            "job_id": job_id,
            "user_id": user_id,
            "name": "parked",
            "schedule": {"type": "interval", "every_seconds": 3600},
            "target": {"type": "kafka", "topic": "out"},
        },
    }


async def produce(stack: Stack, command: dict[str, Any]) -> None:
    """As any Kafka client would: the key is the job's user_id."""
    from topics.producer import durable_producer

    producer = durable_producer(stack.env["KJS_KAFKA_BOOTSTRAP"])
    await producer.start()
    try:
        await producer.send_and_wait(
            stack.catalog.commands.name,
            json.dumps(command).encode(),
            key=command["job"]["user_id"].encode(),
        )
    finally:
        await producer.stop()


async def dead_letter_of(stack: Stack, job_id: str) -> dict[str, bytes]:
    """The headers of the dead letter about ``job_id``, and its value as ``"value"``."""
    consumer = AIOKafkaConsumer(
        stack.catalog.dlq.name,
        bootstrap_servers=stack.env["KJS_KAFKA_BOOTSTRAP"],
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:

        async def read() -> dict[str, bytes] | None:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for rec in records:
                    if rec.value is not None and job_id.encode() in rec.value:
                        return {**dict(rec.headers), "value": rec.value}
            return None

        return await eventually(read, what=f"a dead letter for {job_id}")
    finally:
        await consumer.stop()


async def stored(stack: Stack, job_ids: list[str]) -> int:
    return int(
        await stack.pool.fetchval(
            "SELECT count(*) FROM kjs_jobs WHERE job_id = ANY($1::uuid[])", job_ids
        )
    )


async def test_active_jobs_quota_dead_letters_on_kafka_and_429s_on_http(stack: Stack) -> None:
    tenant = QUOTA_ACTIVE_TENANT
    job_ids = [str(uuid.uuid4()) for _ in range(3)]
    for job_id in job_ids[:2]:
        await produce(stack, parked(tenant, job_id))
    await eventually(lambda: _two(stack, job_ids[:2]), what="the first two jobs to be stored")
    await produce(stack, parked(tenant, job_ids[2]))

    headers = await dead_letter_of(stack, job_ids[2])

    assert headers[REASON].startswith(b"quota: 2 active jobs")
    assert await stored(stack, job_ids) == 2
    # The API refuses the same tenant at once, with a time to come back.
    key = bearer(await make_api_key(stack.pool, tenant))
    body = {k: v for k, v in parked(tenant, "-")["job"].items() if k != "job_id"}
    async with stack.http.post(f"{stack.api_url}/v1/jobs", json=body, headers=key) as resp:
        assert resp.status == 429
        assert int(resp.headers["Retry-After"]) >= 1
        assert (await resp.json())["error"].startswith("quota: 2 active jobs")


async def _two(stack: Stack, job_ids: list[str]) -> bool | None:
    return True if await stored(stack, job_ids) == 2 else None


async def test_submission_rate_quota_dead_letters_the_burst_overflow(stack: Stack) -> None:
    tenant = QUOTA_RATE_TENANT
    job_ids = [str(uuid.uuid4()) for _ in range(3)]
    for job_id in job_ids:
        await produce(stack, parked(tenant, job_id))

    headers = await dead_letter_of(stack, job_ids[2])

    assert headers[REASON].startswith(b"quota: more than 0.001 submissions per second")
    assert await _two(stack, job_ids)


@pytest.mark.parametrize(
    "url",
    # 127.0.0.1 itself is allowlisted for the local targets; the rest of loopback is not.
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://127.0.0.2:9/"],
)
async def test_an_http_job_aimed_inside_is_refused_by_the_worker(
    stack: Stack, user_id: str, url: str
) -> None:
    from datetime import UTC, datetime, timedelta

    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    body = {
        "user_id": user_id,
        "name": "ssrf",
        "schedule": {"type": "once", "at": at},
        "target": {"type": "http", "method": "GET", "url": url, "timeout_s": 5},
        "retry": {"max_attempts": 3, "initial_delay_s": 0.2, "max_delay_s": 1},
    }
    job_id = (await stack.submit(body))["job_id"]

    await stack.wait_status(job_id, "failed")
    (execution,) = await stack.executions(job_id)  # not retried: it would be refused again
    assert execution["error"].startswith("refused:")
    assert "KJS_HTTP_ALLOWLIST" in execution["error"]


async def test_a_secret_reaches_the_target_and_nowhere_else(
    stack: Stack, target: Target, user_id: str
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    target.answer(user_id, (400, {}))  # not retried: the job fails and is dead-lettered
    body = once_job(user_id, target.url(user_id), 1)
    body["target"]["headers"] = {"Authorization": f"Bearer {secret}", "X-Trace": "t-1"}
    job_id = (await stack.submit(body))["job_id"]

    await stack.wait_status(job_id, "failed")
    letter = await dead_letter_of(stack, job_id)

    (hit,) = target.calls(user_id)
    assert hit.headers["Authorization"] == f"Bearer {secret}"  # opened for the request only
    stored_target = await stack.pool.fetchval(
        "SELECT target::text FROM kjs_jobs WHERE job_id = $1", uuid.UUID(job_id)
    )
    assert secret not in stored_target and "kjs-enc:v1:" in stored_target
    shown = await stack.job(job_id)
    assert shown is not None
    assert shown["target"]["headers"] == {"Authorization": "[redacted]", "X-Trace": "t-1"}
    assert secret not in json.dumps(await stack.executions(job_id))
    assert all(secret.encode() not in v for v in letter.values())
    for proc in stack.processes.values():
        assert secret not in proc.log_path.read_text(errors="replace"), proc.name

"""Security through the running system: quotas on both doors, and the SSRF guard in the worker.

The stack's environment gives four tenants tight quota tiers (``QUOTA_ACTIVE_TENANT``: two
active jobs; ``QUOTA_RATE_TENANT``: a burst of two submissions, then almost none;
``QUOTA_DAILY_TENANT``: two executions a day; ``QUOTA_PAYLOAD_TENANT``: targets up to 1,000
bytes) and lets only 127.0.0.1 through the HTTP target guard.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from core.quotas import next_day_start
from tests.acceptance.conftest import (
    QUOTA_ACTIVE_TENANT,
    QUOTA_DAILY_TENANT,
    QUOTA_PAYLOAD_TENANT,
    QUOTA_RATE_TENANT,
)
from tests.acceptance.test_walking_skeleton import once_job
from tests.conftest import bearer, make_api_key
from tests.support.stack import Stack
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually
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
        await stack.command(parked(tenant, job_id))
    await eventually(lambda: _two(stack, job_ids[:2]), what="the first two jobs to be stored")
    await stack.command(parked(tenant, job_ids[2]))

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
        await stack.command(parked(tenant, job_id))

    headers = await dead_letter_of(stack, job_ids[2])

    assert headers[REASON].startswith(b"quota: more than 0.001 submissions per second")
    assert await _two(stack, job_ids)


async def test_executions_per_day_skip_recurring_runs_defer_one_time_jobs_and_429_triggers(
    stack: Stack, target: RecordingTarget
) -> None:
    tenant = QUOTA_DAILY_TENANT
    stack.http.headers["Authorization"] = bearer(await make_api_key(stack.pool, tenant))[
        "Authorization"
    ]
    every = {
        "user_id": tenant,
        "name": "every-second",
        "schedule": {"type": "interval", "every_seconds": 1},
        "target": {"type": "http", "method": "POST", "url": target.url(tenant)},
    }
    job_id = (await stack.submit(every))["job_id"]

    async def over_budget() -> list[dict[str, Any]] | None:
        if await stack.job(job_id) is None:
            return None  # not stored by its shard yet
        runs = await stack.executions(job_id)
        return runs if any(r["status"] == "skipped" for r in runs) else None

    runs = await eventually(over_budget, 60, interval_s=0.3, what="a run skipped by the quota")
    await stack.wait_status(job_id, "scheduled")  # a recurring job goes on to its next run
    ran = [r for r in runs if r["status"] != "skipped"]
    skipped = [r for r in runs if r["status"] == "skipped"]
    assert len(ran) == 2, runs
    assert skipped[0]["error"] == "quota: 2 executions per day (UTC) is the limit"
    # A trigger over HTTP is refused at once, with the time to the next UTC midnight.
    async with stack.http.post(f"{stack.api_url}/v1/jobs/{job_id}/trigger") as resp:
        assert resp.status == 429, await resp.text()
        assert 1 <= int(resp.headers["Retry-After"]) <= 86_400
        assert (await resp.json())["error"] == "quota: 2 executions per day (UTC) is the limit"
    # The same trigger through Kafka is refused by the owning shard, into the DLQ.
    await stack.command({"type": "trigger", "user_id": tenant, "job_id": job_id})
    letter = await dead_letter_of(stack, job_id)
    assert letter[REASON] == b"quota: 2 executions per day (UTC) is the limit"
    # A one-time job past the budget is deferred to the next UTC midnight, not dropped.
    once = once_job(tenant, target.url(tenant), 0.5)
    once_id = (await stack.submit(once))["job_id"]

    async def deferred() -> datetime | None:
        return await stack.pool.fetchval(  # type: ignore[no-any-return]
            "SELECT next_run_at FROM kjs_jobs WHERE job_id = $1"
            " AND next_run_at > now() + interval '1 minute'",
            uuid.UUID(once_id),
        )

    next_run = await eventually(deferred, what="the one-time job to be deferred")
    assert next_run == next_day_start(datetime.now(UTC))
    assert await stack.executions(once_id) == []

    async def budget_ran() -> bool | None:
        # The runs within the budget are fired a lead ahead: wait for them to finish.
        runs = await stack.executions(job_id)
        return True if sum(r["status"] == "succeeded" for r in runs) == 2 else None

    await eventually(budget_ran, what="the two runs within the budget to finish")
    assert len(target.calls(tenant)) == 2
    used = await stack.pool.fetchval(
        "SELECT executions FROM kjs_tenant_usage WHERE user_id = $1", tenant
    )
    assert used == 2
    async with stack.http.delete(f"{stack.api_url}/v1/jobs/{job_id}") as resp:
        assert resp.status == 202


async def test_a_target_over_the_payload_limit_is_413_on_http_and_a_dead_letter_on_kafka(
    stack: Stack,
) -> None:
    tenant = QUOTA_PAYLOAD_TENANT
    key = bearer(await make_api_key(stack.pool, tenant))
    big = parked(tenant, str(uuid.uuid4()))
    big["job"]["target"]["value"] = {"blob": "x" * 2000}
    body = {k: v for k, v in big["job"].items() if k != "job_id"}
    async with stack.http.post(f"{stack.api_url}/v1/jobs", json=body, headers=key) as resp:
        assert resp.status == 413
        error = (await resp.json())["error"]
    assert error.startswith("target: the target is ") and error.endswith("the limit is 1000")

    await stack.command(big)

    headers = await dead_letter_of(stack, big["job"]["job_id"])
    assert headers[REASON].startswith(b"quota: the target is ")
    assert await stored(stack, [big["job"]["job_id"]]) == 0
    # A small target passes, and growing it past the limit with an update is refused too.
    small = {**body, "target": {"type": "kafka", "topic": "out", "value": "ok"}}
    job_id = await _accepted_job(stack, small, key)
    async with stack.http.patch(
        f"{stack.api_url}/v1/jobs/{job_id}", json={"target": body["target"]}, headers=key
    ) as resp:
        assert resp.status == 413


async def _accepted_job(stack: Stack, body: dict[str, Any], key: dict[str, str]) -> str:
    async with stack.http.post(f"{stack.api_url}/v1/jobs", json=body, headers=key) as resp:
        assert resp.status == 202, await resp.text()
        job_id = str((await resp.json())["job_id"])

    async def known() -> bool | None:
        return True if await stored(stack, [job_id]) == 1 else None

    await eventually(known, what="the job to be stored")
    return job_id


@pytest.mark.parametrize(
    "url",
    # 127.0.0.1 itself is allowlisted for the local targets; the rest of loopback is not.
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://127.0.0.2:9/"],
)
async def test_an_http_job_aimed_inside_is_refused_at_both_doors(
    stack: Stack, user_id: str, url: str
) -> None:
    """A literal address the SSRF guard forbids never becomes a job: 422 from the API, a dead
    letter from the submit topic. (A host name is checked by the worker after DNS: the
    worker's guard is tested in tests/unit/test_ssrf_guard.py.)"""
    body = once_job(user_id, url, 1)
    assert stack.http is not None
    async with stack.http.post(f"{stack.api_url}/v1/jobs", json=body) as resp:
        answer = await resp.json()
        assert resp.status == 422, answer
    [error] = answer["errors"]
    assert error["field"] == "target.url" and "KJS_HTTP_ALLOWLIST" in error["message"]

    job_id = str(uuid.uuid4())
    await stack.command({"type": "create", "job": {**body, "job_id": job_id}})
    letter = await dead_letter_of(stack, job_id)

    assert b"target.url" in letter[REASON]
    assert await stack.job(job_id) is None


async def test_a_secret_reaches_the_target_and_nowhere_else(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    secret, token, signing = (f"{kind}-{uuid.uuid4().hex}" for kind in ("s3cr3t", "tok", "sig"))
    target.answer(user_id, (400, {}))  # not retried: the job fails and is dead-lettered
    target.echo.add(user_id)  # and its answer repeats every secret it was sent
    body = once_job(user_id, target.url(user_id), 1)
    body["target"]["headers"] = {
        "Authorization": f"Bearer {secret}",
        "X-Trace": "t-1",
        "X-Signature": "v1={{secrets.signing}}",
    }
    body["target"]["body"] = {"hello": "kjs", "auth": {"token": token}}
    body["target"]["secrets"] = {"signing": signing}
    job_id = (await stack.submit(body))["job_id"]

    await stack.wait_status(job_id, "failed")
    letter = await dead_letter_of(stack, job_id)

    (hit,) = target.calls(user_id)  # opened for the request only
    assert hit.headers["Authorization"] == f"Bearer {secret}"
    assert hit.headers["X-Signature"] == f"v1={signing}"
    assert json.loads(hit.body)["auth"] == {"token": token}
    stored_target = await stack.pool.fetchval(
        "SELECT target::text FROM kjs_jobs WHERE job_id = $1", uuid.UUID(job_id)
    )
    assert stored_target.count("kjs-enc:v2:") == 3
    shown = await stack.job(job_id)
    assert shown is not None
    assert shown["target"]["headers"] == {
        "Authorization": "[redacted]",
        "X-Trace": "t-1",
        "X-Signature": "v1={{secrets.signing}}",
    }
    assert shown["target"]["body"]["auth"] == {"token": "[redacted]"}
    assert shown["target"]["secrets"] == {"signing": "[redacted]"}
    executions = await stack.executions(job_id)
    assert "[redacted]" in executions[0]["output_excerpt"]  # the echo, scrubbed
    for value in (secret, token, signing):
        assert value not in stored_target
        assert value not in json.dumps(shown)
        assert value not in json.dumps(executions)
        assert all(value.encode() not in v for v in letter.values())
        for proc in stack.processes.values():
            assert value not in proc.log_path.read_text(errors="replace"), proc.name

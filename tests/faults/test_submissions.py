"""Submission faults: one submission repeated many times at once over HTTP and Kafka, and
poison records among good ones on jobs.commands."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer

from schemas.v1.ids import job_id_for_key
from tests.conftest import make_api_key
from tests.faults.conftest import Cluster, running_stack
from tests.support.stack import Submitted
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually
from topics import dlq

pytestmark = [pytest.mark.services, pytest.mark.timeout(150)]

REPEATS = 25


async def test_same_submission_many_times_is_one_job(
    shared_cluster: Cluster, target: RecordingTarget
) -> None:
    async with (
        running_stack(shared_cluster, target, "idem", schedulers=1, api=True) as stack,
        aiohttp.ClientSession() as http,
    ):
        api = f"http://127.0.0.1:{stack.processes['api'].env['KJS_API_PORT']}"

        async def ready() -> bool:
            try:
                async with http.get(f"{api}/readyz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(ready, 60, interval_s=0.2, what="the API to be ready")
        user, key = "idem-user", f"order-{uuid.uuid4().hex[:8]}"
        http.headers["Authorization"] = f"Bearer {await make_api_key(stack.pool, user)}"
        at = datetime.now(UTC) + timedelta(seconds=4)
        body = {**stack.once_body(user, "idem-0", at), "idempotency_key": key}
        want = str(job_id_for_key(user, key))

        async def via_http() -> str:
            async with http.post(f"{api}/v1/jobs", json=body) as resp:
                payload: dict[str, Any] = await resp.json()
                assert resp.status == 202, payload
                return str(payload["job_id"])

        async def via_kafka() -> None:
            await stack.produce(user, json.dumps({"type": "create", "job": body}).encode())

        answers, _ = await asyncio.gather(
            asyncio.gather(*(via_http() for _ in range(REPEATS))),
            asyncio.gather(*(via_kafka() for _ in range(REPEATS))),
        )
        assert set(answers) == {want}
        stack.jobs.append(Submitted(want, "idem-0", at))
        await stack.wait_all_called()
        await stack.wait_quiet(2)
        count = await stack.pool.fetchval("SELECT count(*) FROM kjs_jobs WHERE user_id = $1", user)
        report = await stack.report(f"same submission x{2 * REPEATS} (HTTP + Kafka)")
    report.check()
    assert count == 1
    assert report.redelivered_same_key == 0


POISON: list[bytes] = [
    b"not json at all",
    b"\xff\xfe\x00binary",
    b"{}",
    b'{"type": "explode"}',
    b'{"type": "create", "job": {"user_id": "p"}}',
    b'{"type": "create", "job": {"user_id": "p", "name": "x", "schedule": {"type": "once"}}}',
    b'{"type": "cancel", "user_id": "p", "job_id": "00000000-0000-0000-0000-000000000000"}',
    b"[1, 2, 3]",
    b'"a string"',
    b"",
]


async def test_poison_records_go_to_the_dlq_and_good_ones_fire(
    shared_cluster: Cluster, target: RecordingTarget
) -> None:
    async with running_stack(shared_cluster, target, "poison", schedulers=1) as stack:
        poisoned: set[tuple[int, int]] = set()
        for bad in POISON:  # interleaved with good jobs; these keys land on partitions 2, 1, 0
            await stack.submit_spread(3, start_in_s=3, every_s=0.2)
            for user in ("p", "poison-a", "poison-b"):
                poisoned.add(await stack.produce(user, bad))
        await stack.submit_spread(3, start_in_s=3, every_s=0.2)
        await stack.wait_all_called()
        await stack.wait_quiet(2)

        consumer = AIOKafkaConsumer(
            stack.catalog.dlq.name,
            bootstrap_servers=stack.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        seen: set[tuple[int, int]] = set()
        try:

            async def all_dead_lettered() -> bool:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for rec in records:
                        h = {k: v.decode() for k, v in rec.headers}
                        if h.get(dlq.SOURCE_TOPIC) == stack.catalog.commands.name:
                            assert h.get(dlq.REASON), h
                            seen.add((int(h[dlq.SOURCE_PARTITION]), int(h[dlq.SOURCE_OFFSET])))
                return poisoned <= seen

            await eventually(all_dead_lettered, 60, interval_s=0, what="every poison in the DLQ")
        finally:
            await consumer.stop()
        report = await stack.report(f"{len(poisoned)} poison records among good ones")
    report.check()
    assert report.executed == report.submitted

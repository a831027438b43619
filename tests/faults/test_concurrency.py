"""Concurrency limits on the real stack: the owning shard holds executions over a job's
concurrency key back ('pending', with the reason shown by the API) and lets them go as slots
free, also when a worker dies holding one."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.conftest import make_api_key
from tests.faults.conftest import Cluster, kill, running_stack
from tests.support.stack import Stack, Submitted
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]


TENANT = "tenant-c"


async def submit_keyed(stack: Stack, n: int, limit: int, in_s: float) -> list[str]:
    """``n`` one-time jobs of one tenant, all due in ``in_s`` seconds, sharing one key
    (create commands on the submit topic)."""
    at = datetime.now(UTC) + timedelta(seconds=in_s)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for i, job_id in enumerate(ids):
        job: dict[str, Any] = {
            **stack.once_body(TENANT, f"keyed-{i}", at),
            "concurrency": {"key": "reports", "limit": limit},
            "job_id": job_id,
        }
        await stack.produce(TENANT, json.dumps({"type": "create", "job": job}).encode())
    await stack.wait_applied([Submitted(j, f"keyed-{i}", at) for i, j in enumerate(ids)])
    return ids


async def all_succeeded(stack: Stack, ids: list[str], timeout_s: float) -> None:
    uuids = [uuid.UUID(i) for i in ids]

    async def probe() -> bool:
        n = await stack.pool.fetchval(
            "SELECT count(*) FROM kjs_executions"
            " WHERE job_id = ANY($1::uuid[]) AND status = 'succeeded'",
            uuids,
        )
        return bool(n == len(uuids))

    await eventually(probe, timeout_s, interval_s=0.2, what="every job to succeed")


async def test_fifty_jobs_with_one_key_run_three_at_a_time(
    shared_cluster: Cluster, target: RecordingTarget
) -> None:
    target.slow_s = 0.3
    async with (
        running_stack(
            shared_cluster, target, "conc-limit", schedulers=1, workers=2, api=True
        ) as stack,
        aiohttp.ClientSession() as http,
    ):
        api = f"http://127.0.0.1:{stack.processes['api'].env['KJS_API_PORT']}"
        http.headers["Authorization"] = f"Bearer {await make_api_key(stack.pool, TENANT)}"
        ids = await submit_keyed(stack, 50, limit=3, in_s=4)

        async def a_held_one() -> dict[str, Any] | None:
            """An execution the API shows as held back, with the reason."""
            for job_id in ids[-10:]:
                try:
                    async with http.get(f"{api}/v1/jobs/{job_id}/executions") as resp:
                        body = await resp.json() if resp.status == 200 else {"executions": []}
                except aiohttp.ClientError:
                    return None  # the API is still starting
                for e in body["executions"]:
                    if e["status"] == "pending" and e["error"]:
                        return dict(e)
            return None

        held = await eventually(a_held_one, 30, interval_s=0.2, what="an execution held back")
        assert "concurrency key 'reports'" in held["error"]
        await all_succeeded(stack, ids, 120)
    assert target.most_open <= 3
    assert sorted(h.name for h in target.hits) == sorted(f"keyed-{i}" for i in range(50))


async def test_a_slot_held_by_a_killed_worker_frees_when_its_lease_lapses(
    shared_cluster: Cluster, target: RecordingTarget
) -> None:
    target.slow_s = 4.0
    async with running_stack(
        shared_cluster, target, "conc-kill", schedulers=1, workers=2, KJS_WINDOW_S="4"
    ) as stack:
        ids = await submit_keyed(stack, 3, limit=1, in_s=3)
        uuids = [uuid.UUID(i) for i in ids]

        async def running_at_target() -> tuple[str, str] | None:
            rows = await stack.pool.fetch(
                "SELECT execution_id::text, worker FROM kjs_executions"
                " WHERE job_id = ANY($1::uuid[]) AND status = 'running'",
                uuids,
            )
            started = {h.idempotency_key for h in target.hits}
            for r in rows:
                if r["execution_id"] in started:
                    return r["execution_id"], r["worker"]
            return None

        victim, worker = await eventually(
            running_at_target, 30, interval_s=0.05, what="a keyed run to start"
        )
        kill(stack.processes[worker])
        killed_at = datetime.now(UTC)

        async def ran_again() -> bool:
            return any(h.idempotency_key == victim and h.at > killed_at for h in target.hits)

        # The lease (7 s) lapses, the reaper re-queues the run, the other worker runs it.
        await eventually(ran_again, 60, interval_s=0.2, what="the killed run to run again")
        await all_succeeded(stack, ids, 90)
    names = {h.name for h in target.hits}
    assert names == {f"keyed-{i}" for i in range(3)}
    # One at a time throughout: the dead worker's slot went to its own re-run, not to a third.
    assert target.most_open <= 1

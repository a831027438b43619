"""kill -9 a worker in the middle of a job: the execution runs again after its lease lapses,
with the same Idempotency-Key, and nothing runs under a second key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tests.faults.conftest import Cluster, kill, running_stack
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.timeout(150)]


async def test_worker_killed_mid_job_reruns_with_the_same_key(
    shared_cluster: Cluster, target: RecordingTarget
) -> None:
    target.slow_s = 6.0
    # A short window makes the shard's timer look for lapsed leases every 2 s.
    async with running_stack(
        shared_cluster, target, "worker-kill9", schedulers=1, workers=2, KJS_WINDOW_S="4"
    ) as stack:
        await stack.wait_owners({"s1"})
        jobs = await stack.submit_spread(12, start_in_s=3, every_s=0.1, scaled=False)
        await stack.wait_applied(jobs)
        ids = [uuid.UUID(j.job_id) for j in jobs]

        async def running_on_w1() -> list[str] | None:
            rows = await stack.pool.fetch(
                "SELECT execution_id::text FROM kjs_executions"
                " WHERE job_id = ANY($1::uuid[]) AND status = 'running' AND worker = 'w1'",
                ids,
            )
            # Claimed is not started: a worker claims a second ahead of the instant. A victim
            # is a run w1 had started at the target when it died.
            started = {c.idempotency_key for c in target.hits}
            return [r["execution_id"] for r in rows if r["execution_id"] in started] or None

        victims = await eventually(running_on_w1, 30, interval_s=0.05, what="w1 to run jobs")
        since = datetime.now(UTC)
        kill(stack.processes["w1"])

        async def rerun() -> bool:
            counts = {c.idempotency_key: 0 for c in target.hits if c.idempotency_key in victims}
            for c in target.hits:
                if c.idempotency_key in counts:
                    counts[c.idempotency_key] += 1
            return bool(counts) and all(n >= 2 for n in counts.values())

        await eventually(rerun, 90, interval_s=0.2, what="the killed runs to run again")
        rerun_at = min(
            c.at for c in target.hits if c.idempotency_key in victims and c.at > since
        )  # the first call made by the second worker
        await stack.wait_all_called()

        async def all_finished() -> bool:
            n = await stack.pool.fetchval(
                "SELECT count(*) FROM kjs_executions"
                " WHERE job_id = ANY($1::uuid[]) AND status = 'succeeded'",
                ids,
            )
            return bool(n == len(ids))

        await eventually(all_finished, 60, interval_s=0.2, what="every execution to succeed")
        await stack.wait_quiet(2)
        report = await stack.report(
            f"worker kill -9 mid-job ({len(victims)} in flight)",
            (rerun_at - since).total_seconds(),
        )
    report.check()
    assert report.redelivered_same_key >= len(victims)

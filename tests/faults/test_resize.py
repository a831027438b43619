"""``kjs shards resize`` under load: 6 to 12 partitions while jobs fall due, with the resize
stopped after growing the topics (as a crash would stop it) and one of the two schedulers
killed before the re-run finishes it. Every job fires once, every job and unfinished
execution ends on its new shard, and no scheduler holds a pre-resize epoch."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.faults.conftest import Cluster, kill, running_stack
from tests.support.stack import Stack
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually
from topics.partitioner import partition_for

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

BEFORE, AFTER = 6, 12


async def _kjs(stack: Stack, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kjs.cli",
        *args,
        env=stack.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _owned_by(stack: Stack, owner: str) -> dict[int, int]:
    """Until all 12 shards are owned by ``owner``; their epochs."""

    async def probe() -> dict[int, int] | None:
        rows = await stack.pool.fetch("SELECT shard, owner, epoch FROM kjs_shards")
        if sorted(r["shard"] for r in rows) == list(range(AFTER)) and {
            r["owner"] for r in rows
        } == {owner}:
            return {r["shard"]: r["epoch"] for r in rows}
        return None

    return await eventually(probe, 60, interval_s=0.2, what=f"all shards owned by {owner}")


async def test_resize_under_load_with_a_crash_and_a_killed_scheduler(
    shared_cluster: Cluster, target: RecordingTarget
) -> None:
    async with running_stack(shared_cluster, target, "resize", partitions=BEFORE) as stack:
        before = await stack.shard_epochs()
        jobs = await stack.submit_spread(120, start_in_s=4, every_s=0.15, users=40)
        await stack.wait_applied(jobs)

        async def fired() -> bool:
            return len(stack.target.hits) >= 3

        await eventually(fired, 30, interval_s=0.05, what="the first jobs to fire")
        # 1. The resize stops after growing the topics, as a crash there would.
        code, _, err = await _kjs(
            stack, "shards", "resize", "--partitions", str(AFTER), "--stop-after", "grown"
        )
        assert code == 3, err
        # 2. Commands from a producer that still knows 6 partitions (the old count).
        await stack.submit_spread(40, start_in_s=5, every_s=0.2, users=40)
        # 3. One scheduler dies in the middle of the resize.
        kill(stack.processes["s1"])
        # 4. The re-run finishes it; the survivor takes every shard.
        code, out, err = await _kjs(stack, "shards", "resize", "--partitions", str(AFTER))
        print(out, err)
        assert code == 0, err
        assert "resized to 12 partitions" in out
        # 5. And commands after it, from the same (stale) producer.
        await stack.submit_spread(40, start_in_s=3, every_s=0.1, users=40)
        after = await _owned_by(stack, "s2")
        await stack.wait_all_called()
        await stack.wait_quiet(3)
        report = await stack.report("resize 6 -> 12 with s1 killed mid-way")
        misplaced = await stack.pool.fetch(
            "SELECT 'job' AS what, user_id, shard FROM kjs_jobs UNION ALL "
            "SELECT 'execution', user_id, shard FROM kjs_executions "
            "WHERE status IN ('pending', 'queued', 'running')"
        )
        resizes = await stack.pool.fetch("SELECT step FROM kjs_resizes")
        # Every result reached the shard its execution moved to (none left running).
        unrecorded = await stack.pool.fetchval(
            "SELECT count(*) FROM kjs_executions WHERE status <> 'succeeded'"
        )
    report.check()
    assert report.fired == report.submitted == 200
    wrong = [r for r in misplaced if r["shard"] != partition_for(r["user_id"].encode(), AFTER)]
    assert wrong == []
    assert len({r["user_id"] for r in misplaced}) == 40
    # The old owners are fenced: every old shard's epoch moved past the one they held.
    assert all(after[s] > before[s] for s in before)
    assert [r["step"] for r in resizes] == ["done"]
    assert unrecorded == 0

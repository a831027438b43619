"""The pipeline page in chromium: a lane's lag rises while its worker is stopped and falls once
it is back, and the page's figures agree with ``kjs lag --json`` (the same monitor)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import UTC, datetime

import pytest
from playwright.async_api import expect

from tests.acceptance.browser.conftest import Console
from tests.acceptance.conftest import Stack, Target
from tests.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

JOBS = 5
LANE = "low"


async def kjs_lag(stack: Stack, group: str) -> int:
    """The group's lag as ``kjs lag --json`` reports it (one sample)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kjs.cli",
        "lag",
        "--json",
        "--samples",
        "1",
        env=stack.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    [report] = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    [found] = [g for g in report["groups"] if g["group"] == group]
    return int(found["lag"])


async def test_a_lanes_lag_rises_while_its_worker_is_stopped_and_falls_after(
    console: Console, stack: Stack, target: Target
) -> None:
    group = stack.catalog.worker_group(LANE)
    await console.goto("pipeline")
    page = console.page
    row = page.locator(f'#groups tr[data-group="{group}"]')
    await expect(row).to_be_visible(timeout=30_000)
    await expect(row).to_have_attribute("data-lag", "0", timeout=30_000)
    await expect(page.locator("#shards tbody tr[data-shard]")).to_have_count(
        stack.catalog.commands.partitions
    )

    worker = stack.processes[f"worker-{LANE}"]
    hook = f"lag-{console.user_id}"
    await worker.stop()
    try:
        for i in range(JOBS):
            await stack.submit(
                {
                    "name": f"console-lag-{i}",
                    "priority": LANE,
                    "schedule": {"type": "once", "at": datetime.now(UTC).isoformat()},
                    "target": {"type": "http", "method": "GET", "url": target.url(hook)},
                }
            )
        # Nobody consumes the lane: its lag grows to the jobs fired into it, and stays.
        await expect(row).to_have_attribute("data-lag", str(JOBS), timeout=60_000)
        await expect(row).to_have_attribute("data-status", re.compile("STALL|STOP"), timeout=60_000)

        async def agrees() -> bool:
            shown = int(await row.get_attribute("data-lag") or -1)
            return shown == await kjs_lag(stack, group) == JOBS

        await eventually(agrees, 60, interval_s=0.5, what="the page and `kjs lag` to agree")
    finally:
        await worker.start()

    await expect(row).to_have_attribute("data-lag", "0", timeout=90_000)
    await expect(row).to_have_attribute("data-status", "OK", timeout=30_000)
    assert await kjs_lag(stack, group) == 0
    await eventually(
        lambda: _calls(target, hook, JOBS), 60, what="the lane's jobs to run once it is back"
    )
    await console.shot("pipeline")


async def _calls(target: Target, hook: str, count: int) -> bool:
    return len(target.calls(hook)) == count

"""Scheduler faults: kill -9 one of two instances, a clean SIGTERM handover, and a SIGSTOPped
instance that wakes up after another took its shards (the fenced epoch)."""

from __future__ import annotations

import re
import signal
import sys
from datetime import UTC, datetime

import pytest

from tests.faults.conftest import Cluster, kill, running_stack
from tests.support.stack import Stack
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.timeout(150)]


async def _victim(stack: Stack) -> tuple[str, str, list[int]]:
    """The scheduler to hurt, the survivor, and the shards the victim owns."""
    owners = await stack.wait_owners({"s1", "s2"})
    shards = sorted(s for s, o in owners.items() if o == "s1")
    return "s1", "s2", shards


async def _fires_again(stack: Stack, shards: list[int], new_owner: str, since: datetime) -> float:
    """Seconds from ``since`` until every one of ``shards`` fired again from ``new_owner``."""

    async def probe() -> datetime | None:
        return await stack.refired_at(shards, new_owner)

    at = await eventually(probe, 60, interval_s=0.1, what=f"shards {shards} to fire again")
    return (at - since).total_seconds()


async def _first_fired(stack: Stack) -> None:
    async def probe() -> bool:
        return len(stack.target.hits) >= 3

    await eventually(probe, 30, interval_s=0.05, what="the first jobs to fire")


@pytest.mark.parametrize("how", ["kill-9", "sigterm"])
async def test_scheduler_loss_fires_everything_once(
    shared_cluster: Cluster, target: RecordingTarget, how: str
) -> None:
    async with running_stack(shared_cluster, target, f"sched-{how}") as stack:
        victim, survivor, shards = await _victim(stack)
        jobs = await stack.submit_spread(75, start_in_s=3, every_s=0.2)
        await stack.wait_applied(jobs)
        await _first_fired(stack)
        since = datetime.now(UTC)
        if how == "kill-9":
            kill(stack.processes[victim])
        else:
            kill(stack.processes[victim], signal.SIGTERM)
        recovery = await _fires_again(stack, shards, survivor, since)
        await stack.wait_owners({survivor})
        await stack.wait_all_called()
        await stack.wait_quiet(2)
        report = await stack.report(f"scheduler {how} (failover of {shards})", recovery)
    report.check()
    assert report.fired == report.submitted


# What a scheduler logs when the fence refuses one of its writes (scheduler.store.shards.Fenced).
FENCED_WRITE = re.compile(r"shard (\d+): holding epoch (\d+), current is (\d+)")
# What it logs when its group takes a shard away (scheduler.shards.Shards.revoke).
REVOKED = re.compile(r"shard (\d+) revoked \(epoch (\d+)\)")


async def test_paused_scheduler_is_fenced_or_stands_down_when_it_wakes(
    shared_cluster: Cluster, target: RecordingTarget
) -> None:
    async with running_stack(shared_cluster, target, "sched-sigstop") as stack:
        victim, survivor, shards = await _victim(stack)
        jobs = await stack.submit_spread(75, start_in_s=3, every_s=0.2)
        await stack.wait_applied(jobs)
        await _first_fired(stack)
        held = await stack.shard_epochs()  # the epochs the victim holds its shards with
        since = datetime.now(UTC)
        kill(stack.processes[victim], signal.SIGSTOP)
        try:
            recovery = await _fires_again(stack, shards, survivor, since)
            await stack.wait_owners({survivor})
            # While the victim sleeps, the survivor's bump makes its epochs stale.
            taken = await stack.shard_epochs()
            assert all(taken[s] > held[s] for s in shards), (held, taken)
        finally:
            kill(stack.processes[victim], signal.SIGCONT)

        # It wakes with those shards' due jobs still in its timers. Either a timer fires first,
        # and every such write meets the new epoch and is refused; or its consumer learns of
        # the rebalance first and gives the shards up (revoked, at the epoch it held) before
        # writing. Which comes first is a race inside the woken process; a write with the
        # stale epoch never lands either way (report.check: nothing run twice or lost).
        async def stood_down() -> list[tuple[str, int, int]] | None:
            log_text = stack.processes[victim].log()
            refused = [
                ("fenced", int(m[1]), int(m[2]))
                for m in FENCED_WRITE.finditer(log_text)
                if int(m[1]) in shards and int(m[2]) == held[int(m[1])]
            ]
            revoked = [
                ("revoked", int(m[1]), int(m[2]))
                for m in REVOKED.finditer(log_text)
                if int(m[1]) in shards and int(m[2]) == held[int(m[1])]
            ]
            return refused or revoked or None

        fenced = await eventually(
            stood_down, 30, interval_s=0.2, what="the woken scheduler to stand down"
        )
        # The woken instance rejoins (a new assignment, a new epoch) and jobs keep firing.
        await stack.wait_owners({victim, survivor}, 90)
        await stack.wait_all_called()
        await stack.wait_quiet(3)
        report = await stack.report(f"scheduler SIGSTOP past session timeout ({shards})", recovery)
    print(f"woken scheduler stood down: {fenced}", file=sys.stderr)
    report.check()
    assert report.redelivered_same_key == 0

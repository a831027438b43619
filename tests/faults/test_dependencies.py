"""Dependencies restarting under load, on a private broker and Postgres (``private_cluster``):
Postgres with ``pg_ctl restart -m immediate`` (a crash and recovery), and the Kafka broker
stopped and started again. Jobs are submitted before and during the outage; none is lost."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from infra import broker, database
from infra.paths import Layout
from infra.process import run
from infra.supervisor import READY_DEADLINE_S
from tests.faults.conftest import Cluster, running_stack
from tests.support.stack import Stack
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]


async def _first_fired(stack: Stack) -> None:
    async def probe() -> bool:
        return len(stack.target.hits) >= 3

    await eventually(probe, 30, interval_s=0.05, what="the first jobs to fire")


async def _called_after(stack: Stack, since: datetime) -> float:
    """Seconds from ``since`` until the target was called again."""

    async def probe() -> datetime | None:
        return min((c.at for c in stack.target.hits if c.at > since), default=None)

    at = await eventually(probe, 120, interval_s=0.1, what="a call after the outage")
    return (at - since).total_seconds()


async def test_postgres_crash_restart_loses_nothing(
    private_cluster: Cluster, target: RecordingTarget
) -> None:
    infra = private_cluster.infra
    assert infra is not None
    async with running_stack(private_cluster, target, "pg-restart", schedulers=1) as stack:
        jobs = await stack.submit_spread(60, start_in_s=3, every_s=0.25)
        await stack.wait_applied(jobs)
        await _first_fired(stack)
        since = datetime.now(UTC)
        pg_ctl = str(database.find_bin_dir() / "pg_ctl")
        argv = [pg_ctl, "restart", "-D", str(Layout.of(infra).pg_data), "-m", "immediate"]
        argv += ["-w", "-t", "60", "-s", "-l", str(Layout.of(infra).pg_log)]
        restart = asyncio.ensure_future(run(database._as_owner(argv), limit_s=70, what="pg_ctl"))
        # Submissions while Postgres is down wait in Kafka.
        await stack.submit_spread(20, start_in_s=2, every_s=0.25)
        await restart
        back = datetime.now(UTC)
        recovery = await _called_after(stack, back)
        await stack.wait_all_called(120)
        await stack.wait_quiet(2)
        report = await stack.report(
            "Postgres restart -m immediate", (back - since).total_seconds() + recovery
        )
    report.check()


async def test_broker_restart_loses_nothing(
    private_cluster: Cluster, target: RecordingTarget
) -> None:
    infra = private_cluster.infra
    assert infra is not None
    async with running_stack(private_cluster, target, "kafka-restart", schedulers=1) as stack:
        jobs = await stack.submit_spread(60, start_in_s=3, every_s=0.25)
        await stack.wait_applied(jobs)
        await _first_fired(stack)
        t0 = time.monotonic()
        await broker.stop(infra)
        await broker.start(infra, READY_DEADLINE_S)
        outage = time.monotonic() - t0
        back = datetime.now(UTC)
        # Jobs submitted once the broker is back, as well as those that fell due meanwhile.
        await stack.submit_spread(20, start_in_s=2, every_s=0.25)
        recovery = await _called_after(stack, back)
        await stack.wait_all_called(120)
        await stack.wait_quiet(2)
        report = await stack.report(
            f"Kafka broker restart (down {outage:.1f}s)",
            outage + recovery,
        )
    report.check()

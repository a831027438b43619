"""Pause, resume, update, trigger and cancel through Kafka commands; catch-up and overlap."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.settings import SchedulerSettings
from tests.acceptance.test_walking_skeleton import once_job
from tests.support.stack import Stack
from tests.support.targets import Hit, RecordingTarget
from tests.support.waiting import eventually

pytestmark = pytest.mark.services


def every(user_id: str, url: str, seconds: float, **policy: Any) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "name": "recurring",
        "schedule": {"type": "interval", "every_seconds": seconds, **policy},
        "target": {"type": "http", "method": "GET", "url": url, "timeout_s": 30},
    }


async def wall_clock_passes(seconds: float) -> None:
    """Let real time pass (what is being tested is the schedule's behaviour across it)."""
    until = time.monotonic() + seconds

    async def passed() -> bool:
        return time.monotonic() >= until

    await eventually(passed, timeout_s=seconds + 5, interval_s=0.1, what=f"{seconds}s to pass")


async def test_pause_resume_update_trigger_and_cancel_through_kafka(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    job_id = (await stack.submit(every(user_id, target.url(user_id), 1)))["job_id"]
    await eventually(lambda: _hits_at_least(target, user_id, 1), what="a first tick")

    await stack.command({"type": "pause", "user_id": user_id, "job_id": job_id})
    await stack.wait_status(job_id, "paused")
    paused_at = len(target.calls(user_id))
    await wall_clock_passes(2.5)
    # At most one run that was already out when the pause landed.
    assert len(target.calls(user_id)) <= paused_at + 1

    moved = f"{user_id}-moved"
    await stack.command(
        {
            "type": "update",
            "user_id": user_id,
            "job_id": job_id,
            "changes": {
                "target": {"type": "http", "method": "GET", "url": target.url(moved)},
                "priority": "critical",
            },
        }
    )
    await eventually(
        lambda: _job_field(stack, job_id, "priority", "critical"), what="the update applied"
    )
    assert (await stack.job(job_id) or {})["status"] == "paused", "an update keeps a pause"

    await stack.command({"type": "trigger", "user_id": user_id, "job_id": job_id})
    await eventually(lambda: _hits_at_least(target, moved, 1), what="the triggered run")

    await stack.command({"type": "resume", "user_id": user_id, "job_id": job_id})
    await stack.wait_status(job_id, "scheduled")
    await eventually(lambda: _hits_at_least(target, moved, 3), what="ticks after resume")

    await stack.command({"type": "cancel", "user_id": user_id, "job_id": job_id})
    await stack.wait_status(job_id, "cancelled")
    lanes = {e["lane"] for e in await stack.executions(job_id) if e["status"] == "succeeded"}
    assert "critical" in lanes, "runs after the update use the new priority"


async def test_catch_up_policies_after_a_scheduler_outage(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    jobs = {}
    for policy in ("none", "latest", "all"):
        name = f"{user_id}-{policy}"
        body = every(
            user_id, target.url(name), 1, catchup=policy, misfire_grace_s=0.5, max_catchup=2
        )
        jobs[policy] = (name, (await stack.submit(body))["job_id"])
    for name, _ in jobs.values():
        await eventually(lambda name=name: _hits_at_least(target, name, 1), what=f"{name} ticking")

    stopped = datetime.now(UTC)
    await stack.processes["scheduler"].stop()
    await wall_clock_passes(4)
    await stack.processes["scheduler"].start()
    await stack.wait_shards_owned(datetime.now(UTC) - timedelta(seconds=1))
    for name, _ in jobs.values():
        count = len(target.calls(name))
        await eventually(
            lambda name=name, count=count: _hits_at_least(target, name, count + 1),
            what=f"{name} ticking again",
        )

    # Occurrences due within the lead of the stop were fired before it: not misfires, even
    # when the outbox re-sends them late after the restart.
    fired_before_stop = stopped + timedelta(milliseconds=SchedulerSettings().lead_ms)

    def caught_up(executions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Runs of misfired occurrences: due after the stop's lead, and started later than the
        grace after their time (a normal run starts within milliseconds)."""
        return [
            e
            for e in executions
            if e["status"] == "succeeded"
            and datetime.fromisoformat(e["scheduled_for"]) > fired_before_stop
            and datetime.fromisoformat(e["started_at"]) - datetime.fromisoformat(e["scheduled_for"])
            > timedelta(seconds=0.5)
        ]

    def skipped(executions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in executions if e["status"] == "skipped" and "misfire" in e["error"]]

    runs = {policy: await stack.executions(job_id) for policy, (_, job_id) in jobs.items()}
    assert caught_up(runs["none"]) == [], "catchup=none ran a misfired occurrence"
    assert skipped(runs["none"]), "catchup=none must record what it skipped"
    assert len(caught_up(runs["latest"])) == 1, "catchup=latest runs the most recent misfire"
    assert len(caught_up(runs["all"])) == 2, "catchup=all replays up to max_catchup"
    assert skipped(runs["all"]), "misfires beyond max_catchup are recorded as skipped"
    assert stopped < min(datetime.fromisoformat(e["scheduled_for"]) for e in skipped(runs["none"]))
    for _, job_id in jobs.values():
        await stack.command({"type": "cancel", "user_id": user_id, "job_id": job_id})


@pytest.mark.parametrize("overlap", ["forbid", "buffer_one", "replace", "allow"])
async def test_overlap_policy_with_a_slow_target(
    stack: Stack, target: RecordingTarget, user_id: str, overlap: str
) -> None:
    target.answer_slowly(user_id, 2.5)
    body = every(user_id, target.url(user_id), 1, overlap=overlap)
    job_id = (await stack.submit(body))["job_id"]
    await eventually(lambda: _hits_at_least(target, user_id, 2), timeout_s=30, what="two runs")
    await stack.command({"type": "cancel", "user_id": user_id, "job_id": job_id})
    await stack.wait_status(job_id, "cancelled")
    runs = await stack.executions(job_id)
    statuses = [e["status"] for e in runs]
    if overlap == "forbid":
        assert "skipped" in statuses
        assert all("overlap" in (e["error"] or "") for e in runs if e["status"] == "skipped")
    elif overlap == "buffer_one":
        assert "skipped" in statuses, "ticks beyond the one buffered are skipped"
        _check_the_buffered_run_waited(runs, target.calls(user_id))
    elif overlap == "replace":
        assert any("replaced" in (e["error"] or "") for e in runs if e["status"] == "cancelled")
    else:
        starts = sorted(h.at for h in target.calls(user_id))
        assert starts[1] - starts[0] < timedelta(seconds=2.5), "allow runs concurrently"


def _check_the_buffered_run_waited(runs: list[dict[str, Any]], calls: list[Hit]) -> None:
    """The second run of a buffer_one job is the occurrence buffered while the first one ran
    (its tick came before the first run finished), and it started only once the first run
    had finished: not concurrently (allow), and not at a later tick (forbid)."""
    by_key = {e["execution_id"]: e for e in runs}
    first, second = (by_key[c.headers["Idempotency-Key"]] for c in calls[:2])
    assert first["finished_at"], "the second run started while the first one was running"
    first_done = datetime.fromisoformat(first["finished_at"])
    assert datetime.fromisoformat(second["scheduled_for"]) < first_done, (
        "the second run is not the occurrence buffered while the first one ran"
    )
    assert datetime.fromisoformat(second["started_at"]) >= first_done, (
        "the buffered run started before the previous run finished"
    )
    # The target's own clock says the same: the second call came after the first one's
    # 2.5 s answer.
    assert calls[1].at - calls[0].at >= timedelta(seconds=2.5)


async def test_a_once_job_cannot_be_paused_after_it_ran(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    job_id = (await stack.submit(once_job(user_id, target.url(user_id), 1)))["job_id"]
    await stack.wait_status(job_id, "succeeded")
    await stack.command({"type": "pause", "user_id": user_id, "job_id": job_id})
    # The refusal is a dead letter; the job is untouched. Synchronise on a later command.
    marker = (await stack.submit(once_job(user_id, target.url(f"{user_id}-m"), 1)))["job_id"]
    await stack.wait_status(marker, "succeeded")
    assert (await stack.job(job_id) or {})["status"] == "succeeded"


async def _hits_at_least(target: RecordingTarget, name: str, n: int) -> bool:
    return len(target.calls(name)) >= n


async def _job_field(stack: Stack, job_id: str, name: str, value: Any) -> bool:
    job = await stack.job(job_id)
    return job is not None and job.get(name) == value


async def test_lifecycle_through_http_with_409_for_illegal_transitions(
    stack: Stack, target: RecordingTarget, user_id: str
) -> None:
    api = f"{stack.api_url}/v1/jobs"
    job_id = (await stack.submit(every(user_id, target.url(user_id), 1)))["job_id"]
    await eventually(lambda: stack.job(job_id), what="the job to be stored")

    async def post(action: str) -> int:
        async with stack.http.post(f"{api}/{job_id}/{action}") as resp:
            return resp.status

    assert await post("resume") == 409, "a scheduled job cannot be resumed"
    assert await post("pause") == 202
    await stack.wait_status(job_id, "paused")
    assert await post("pause") == 409
    async with stack.http.patch(f"{api}/{job_id}", json={"priority": "low"}) as resp:
        assert resp.status == 202
    async with stack.http.patch(f"{api}/{job_id}", json={"priority": "urgent"}) as resp:
        assert resp.status == 422
        assert "priority" in json.dumps(await resp.json())
    await eventually(lambda: _job_field(stack, job_id, "priority", "low"), what="the update")
    assert await post("trigger") == 202
    await eventually(lambda: _hits_at_least(target, user_id, 1), what="the triggered run")
    assert await post("resume") == 202
    await stack.wait_status(job_id, "scheduled")
    async with stack.http.delete(f"{api}/{job_id}") as resp:
        assert resp.status == 202
    await stack.wait_status(job_id, "cancelled")
    assert await post("trigger") == 409, "a cancelled job cannot be triggered"
    async with stack.http.post(f"{api}/00000000-0000-4000-8000-000000000000/pause") as resp:
        assert resp.status == 404

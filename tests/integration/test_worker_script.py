"""The script runner with real processes: allowlist, environment, output, timeouts, groups.

No broker or database is involved: the runner is driven directly, so each test sees exactly
what one attempt does to the processes it starts.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from core.settings import TargetSettings
from schemas.v1.targets import ScriptTarget
from tests.support.waiting import eventually
from workers.targets.base import Attempt, Outcome
from workers.targets.script import ScriptRunner

ATTEMPT = Attempt(execution_id=uuid4(), job_id=uuid4(), user_id="u-1", attempt=1)
ALLOW_SH = TargetSettings(script_enabled=True, script_allowlist=["sh"])
EXCERPT_BYTES = 1024


def script(*command: str, **fields: Any) -> ScriptTarget:
    return ScriptTarget(type="script", command=list(command), **fields)


async def run(target: ScriptTarget, policy: TargetSettings = ALLOW_SH) -> Outcome:
    return await ScriptRunner(policy, EXCERPT_BYTES)(target, ATTEMPT)


def output(outcome: Outcome) -> dict[str, Any]:
    assert outcome.output_excerpt is not None
    body: dict[str, Any] = json.loads(outcome.output_excerpt)
    return body


def real_path(path: Path) -> str:
    return os.path.realpath(path)


def gone(pid: int) -> bool:
    """Whether the process has exited (a zombie waiting for init to reap it has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def wait_gone(pid: int) -> None:
    async def check() -> bool:
        return gone(pid)

    await eventually(check, timeout_s=10, what=f"process {pid} to be gone")


async def test_an_allowed_script_runs_with_its_environment_and_its_output_is_recorded(
    tmp_path: Path,
) -> None:
    target = script(
        "/bin/sh",
        "-c",
        'echo "$KJS_EXECUTION_ID $KJS_IDEMPOTENCY_KEY $GREETING ${HOME-nohome} $(pwd)";'
        " echo oops >&2",
        cwd=str(tmp_path),
        env={"GREETING": "hello"},
    )
    outcome = await run(target)

    assert outcome.succeeded, outcome
    key = str(ATTEMPT.execution_id)
    # The worker's own environment (HOME, KJS_*) does not leak into the script.
    line = f"{key} {key} hello nohome {real_path(tmp_path)}\n"
    assert output(outcome) == {
        "exit_code": 0,
        "stdout": line,
        "stdout_bytes": len(line),
        "stderr": "oops\n",
        "stderr_bytes": 5,
    }


async def test_a_command_outside_the_allowlist_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    outcome = await run(script("/usr/bin/touch", str(marker)))

    assert not outcome.succeeded and not outcome.retryable
    assert outcome.error == "'/usr/bin/touch' is not on the script allowlist"
    assert not marker.exists()


async def test_scripts_are_refused_while_the_operator_has_not_enabled_them() -> None:
    outcome = await run(script("sh", "-c", "true"), TargetSettings(script_allowlist=["sh"]))
    assert (outcome.succeeded, outcome.retryable) == (False, False)
    assert outcome.error == "script targets are not enabled"


async def test_a_hanging_script_is_killed_at_its_timeout_with_its_children() -> None:
    outcome = await run(script("sh", "-c", "sleep 100 & echo $!; sleep 100", timeout_s=0.5))

    assert (outcome.succeeded, outcome.retryable) == (False, True)
    assert outcome.error == "timed out after 0.5 s; its process group was killed"
    child = int(output(outcome)["stdout"])
    await wait_gone(child)


async def test_children_left_behind_by_a_finished_script_do_not_hold_it_or_outlive_it() -> None:
    # Were the attempt to wait for the pipes the child holds, it would end as a timeout.
    outcome = await run(script("sh", "-c", "sleep 100 & echo $!", timeout_s=30))

    assert outcome.succeeded, outcome
    await wait_gone(int(output(outcome)["stdout"]))


async def test_a_cancelled_attempt_kills_its_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    target = script("sh", "-c", f"sleep 100 & echo $! > {pid_file}; sleep 100", timeout_s=60)
    attempt = asyncio.create_task(run(target))

    async def started() -> str | None:
        text = pid_file.read_text() if pid_file.exists() else ""
        return text if text.endswith("\n") else None

    child = int(await eventually(started, timeout_s=10, what="the script to start its child"))
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    await wait_gone(child)


@pytest.mark.parametrize(("non_retryable", "retryable"), [([], True), ([3], False), ([4, 5], True)])
async def test_a_nonzero_exit_is_retried_unless_its_code_says_not_to(
    non_retryable: list[int], retryable: bool
) -> None:
    outcome = await run(script("sh", "-c", "exit 3", non_retryable_exit_codes=non_retryable))
    assert (outcome.succeeded, outcome.retryable, outcome.error) == (
        False,
        retryable,
        "exit code 3",
    )
    assert output(outcome)["exit_code"] == 3


async def test_huge_output_is_bounded_and_counted() -> None:
    outcome = await run(script("sh", "-c", "yes 0123456789 | head -c 5000000; echo done >&2"))

    assert outcome.succeeded, outcome
    body = output(outcome)
    assert body["stdout_bytes"] == 5_000_000
    assert len(body["stdout"].encode()) == EXCERPT_BYTES
    assert body["stderr"] == "done\n"


async def test_a_script_that_cannot_start_is_a_failure_not_retried(tmp_path: Path) -> None:
    outcome = await run(script("sh", "-c", "true", cwd=str(tmp_path / "missing")))
    assert (outcome.succeeded, outcome.retryable) == (False, False)
    assert outcome.error is not None and outcome.error.startswith("could not start")


@pytest.mark.parametrize("sig", ["KILL", "SEGV"])
async def test_a_child_that_crashes_is_a_failed_attempt_and_the_runner_goes_on(sig: str) -> None:
    crashed = await run(script("sh", "-c", f"echo before; kill -{sig} $$", timeout_s=10))
    assert not crashed.succeeded and crashed.error is not None, crashed
    assert output(crashed)["stdout"].startswith("before")
    # The same runner still runs the next job: the crash took only its own child down.
    assert (await run(script("sh", "-c", "echo after"))).succeeded

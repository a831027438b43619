"""``kjs jobs ...`` as a user runs it: subprocesses against the whole running stack."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.handlers_schedules import PreviewResponse
from api.models import ExecutionDetail, JobPage, JobView
from tests.acceptance.conftest import Stack, Target, free_port
from tests.conftest import make_api_key
from tests.waiting import eventually

pytestmark = pytest.mark.services


@dataclass
class Run:
    code: int
    out: str
    err: str


def _env(url: str, key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
    env["KJS_API_URL"] = url
    if key is not None:
        env["KJS_API_KEY"] = key
    return env


async def kjs_jobs(
    stack: Stack, key: str | None, *args: str, stdin: bytes = b"", url: str | None = None
) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kjs.cli",
        "jobs",
        *args,
        env=_env(url or stack.api_url, key),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    run = Run(proc.returncode, out.decode(), err.decode())
    assert "Traceback" not in run.err, run.err
    return run


def ok(run: Run) -> str:
    assert run.code == 0, run
    return run.out


@pytest.fixture
async def key(stack: Stack, user_id: str) -> str:
    return await make_api_key(stack.pool, user_id)


async def stored(stack: Stack, job_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        return await stack.job(job_id)

    return await eventually(probe, what=f"job {job_id} stored")


async def field_is(stack: Stack, job_id: str, field: str, value: Any) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        job = await stack.job(job_id)
        return job if job is not None and job[field] == value else None

    return await eventually(probe, what=f"job {job_id} {field}={value!r}")


def table_rows(out: str) -> tuple[list[str], list[str]]:
    """The header and the rows of a table the CLI printed."""
    lines = [line for line in out.splitlines() if line.strip()]
    return lines[0].split(), lines[1:]


def fields(out: str) -> dict[str, str]:
    """The ``name: value`` lines of a summary (``get``, ``logs``)."""
    found = {}
    for line in out.split("--- output excerpt ---")[0].splitlines():
        name, _, value = line.partition(":")
        found[name] = value.strip()
    return found


async def test_create_from_flags_then_list_get_runs_and_logs(
    stack: Stack, target: Target, user_id: str, key: str
) -> None:
    out = ok(
        await kjs_jobs(
            stack,
            key,
            "create",
            "--name",
            "cli-once",
            "--in",
            "1s",
            "--http",
            "post",
            target.url(user_id),
            "--header",
            "X-From: the cli",
            "--body",
            '{"hello": "cli"}',
            "--priority",
            "critical",
            "--user-id",
            user_id,
        )
    )
    job_id = str(uuid.UUID(out.strip()))  # only the id, so JOB=$(kjs jobs create ...) works
    await stack.wait_status(job_id, "succeeded")
    (hit,) = target.calls(user_id)
    assert hit.headers["X-From"] == "the cli"
    assert json.loads(hit.body) == {"hello": "cli"}

    header, rows = table_rows(ok(await kjs_jobs(stack, key, "list", "--user-id", user_id)))
    assert header == ["ID", "NAME", "STATUS", "SCHEDULE", "NEXT", "RUN", "LAST"]
    (row,) = rows
    assert row.split()[:4] == [job_id, "cli-once", "succeeded", "once"]
    assert row.split()[-3] == "succeeded" and row.endswith(" ago"), "LAST shows the last run"
    page = JobPage.model_validate_json(
        ok(await kjs_jobs(stack, key, "list", "--user-id", user_id, "--json"))
    )
    assert [str(j.job_id) for j in page.jobs] == [job_id]
    filtered = ok(
        await kjs_jobs(stack, key, "list", "--user-id", user_id, "--status", "paused", "--json")
    )
    assert JobPage.model_validate_json(filtered).jobs == []

    summary = fields(ok(await kjs_jobs(stack, key, "get", job_id)))
    assert summary["job"] == job_id
    assert (summary["name"], summary["status"], summary["priority"]) == (
        "cli-once",
        "succeeded",
        "critical",
    )
    assert summary["target"] == f"http POST {target.url(user_id)}"
    assert summary["schedule"].startswith("once ")
    assert summary["last run"].split()[1] == "succeeded"
    job = JobView.model_validate_json(ok(await kjs_jobs(stack, key, "get", job_id, "--json")))
    assert job.priority == "critical" and job.target.type == "http"
    assert job.target.headers == {"X-From": "the cli"}

    header, rows = table_rows(ok(await kjs_jobs(stack, key, "runs", job_id)))
    assert header[:3] == ["EXECUTION", "SCHEDULED", "FOR"]
    (row,) = rows
    execution_id, *_ = row.split()
    assert row.split()[3:6] == ["1", "critical", "succeeded"]
    assert row.split()[7] == "200"
    listed = json.loads(ok(await kjs_jobs(stack, key, "runs", job_id, "--json")))
    assert [e["execution_id"] for e in listed["executions"]] == [execution_id]

    logs = ok(await kjs_jobs(stack, key, "logs", execution_id))
    shown = fields(logs)
    assert (shown["execution"], shown["job"], shown["status"]) == (
        execution_id,
        job_id,
        "succeeded",
    )
    assert (shown["http status"], shown["error"], shown["lane"]) == ("200", "-", "critical")
    assert shown["worker"] != "-" and shown["finished"].endswith("s)")  # "(took 0.012s)"
    assert '"ok": true' in logs.split("--- output excerpt ---\n")[1]
    detail = ExecutionDetail.model_validate_json(
        ok(await kjs_jobs(stack, key, "logs", execution_id, "--json"))
    )
    assert (detail.http_status, str(detail.job_id)) == (200, job_id)


JOB_YAML = """\
# a job as a file
name: from-yaml
schedule:
  type: cron
  expression: "*/5 * * * *"
  timezone: Europe/Berlin
target:
  type: http
  method: PUT
  url: {url}
  body:
    report: daily
    sizes: [1, 2]
retry:
  max_attempts: 5
idempotency_key: yaml-{user}
"""


async def test_create_from_yaml_and_json_files_and_stdin(
    stack: Stack, target: Target, user_id: str, key: str, tmp_path: Path
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(JOB_YAML.format(url=target.url(user_id), user=user_id))
    out = ok(await kjs_jobs(stack, key, "create", "-f", str(path), "--user-id", user_id))
    job_id = out.strip()
    job = await stored(stack, job_id)
    assert job["schedule"]["expression"] == "*/5 * * * *"
    assert job["schedule"]["timezone"] == "Europe/Berlin"
    assert job["target"]["method"] == "PUT"
    assert job["target"]["body"] == {"report": "daily", "sizes": [1, 2]}
    assert job["retry"]["max_attempts"] == 5
    # The same idempotency key names the same job.
    again = ok(await kjs_jobs(stack, key, "create", "-f", str(path), "--user-id", user_id))
    assert again.strip() == job_id

    # Flags replace what the file says; YAML's own timestamps (unquoted) are sent as RFC 3339.
    once = tmp_path / "once.yml"
    once.write_text(
        f"name: once\nschedule:\n  type: once\n  at: 2099-01-01T10:00:00Z\n"
        f"target: {{type: http, method: GET, url: '{target.url(user_id)}'}}\n"
    )
    out = ok(
        await kjs_jobs(
            stack,
            key,
            "create",
            "-f",
            str(once),
            "--name",
            "renamed",
            "--user-id",
            user_id,
            "--json",
        )
    )
    accepted = json.loads(out)
    assert accepted["status"] == "accepted"
    job = await stored(stack, accepted["job_id"])
    assert job["name"] == "renamed"
    assert job["schedule"]["at"].startswith("2099-01-01T10:00:00")

    as_json = json.dumps(
        {
            "user_id": user_id,
            "name": "from-stdin",
            "schedule": {"type": "interval", "every_seconds": 3600},
            "target": {"type": "kafka", "topic": "cli-out", "key": "k", "value": {"n": 1}},
        }
    )
    out = ok(await kjs_jobs(stack, key, "create", "-f", "-", stdin=as_json.encode()))
    job = await stored(stack, out.strip())
    assert job["target"] == {**job["target"], "type": "kafka", "topic": "cli-out", "key": "k"}
    jpath = tmp_path / "job.json"
    jpath.write_text(as_json.replace("from-stdin", "from-json"))
    out = ok(await kjs_jobs(stack, key, "create", "-f", str(jpath)))
    assert (await stored(stack, out.strip()))["name"] == "from-json"


async def test_pause_resume_trigger_update_and_cancel(
    stack: Stack, target: Target, user_id: str, key: str
) -> None:
    out = ok(
        await kjs_jobs(
            stack,
            key,
            "create",
            "--name",
            "lifecycle",
            "--every",
            "1h",
            "--http",
            "GET",
            target.url(user_id),
            "--user-id",
            user_id,
        )
    )
    job_id = out.strip()
    await stored(stack, job_id)

    assert ok(await kjs_jobs(stack, key, "pause", job_id)).strip() == (
        f"job {job_id}: pause accepted"
    )
    await field_is(stack, job_id, "status", "paused")
    refused = await kjs_jobs(stack, key, "pause", job_id)
    assert refused.code == 1
    assert refused.err.strip() == "kjs: 409 Conflict: cannot pause a job that is paused"

    ok(await kjs_jobs(stack, key, "trigger", job_id))
    await eventually(lambda: _hit(target, user_id), what="the triggered run")

    moved = f"{user_id}-moved"
    ok(
        await kjs_jobs(
            stack,
            key,
            "update",
            job_id,
            "--name",
            "updated",
            "--cron",
            "0 3 * * *",
            "--tz",
            "America/New_York",
            "--http",
            "GET",
            target.url(moved),
            "--priority",
            "low",
        )
    )
    job = await field_is(stack, job_id, "name", "updated")
    assert job["status"] == "paused", "an update keeps a pause"
    assert job["schedule"]["timezone"] == "America/New_York"
    assert (job["priority"], job["target"]["url"]) == ("low", target.url(moved))

    ok(await kjs_jobs(stack, key, "resume", job_id))
    await field_is(stack, job_id, "status", "scheduled")
    assert "job:" in ok(await kjs_jobs(stack, key, "get", job_id))

    assert ok(await kjs_jobs(stack, key, "cancel", job_id)).strip() == f"job {job_id}: cancelling"
    await field_is(stack, job_id, "status", "cancelled")
    again = await kjs_jobs(stack, key, "cancel", job_id)
    assert (again.code, again.err.strip()) == (1, "kjs: 409 Conflict: job already finished")


async def _hit(target: Target, name: str) -> bool:
    return bool(target.calls(name))


async def test_preview_from_flags_and_of_a_job(stack: Stack, user_id: str, key: str) -> None:
    out = ok(
        await kjs_jobs(
            stack,
            key,
            "preview",
            "--cron",
            "30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--count",
            "2",
            "--from",
            "2026-03-28T12:00:00Z",
        )
    )
    title, head, first, second = out.strip().splitlines()
    assert title == 'next 2 fire time(s) of cron "30 2 * * *" Europe/Berlin'
    assert head.split() == ["#", "LOCAL", "(Europe/Berlin)", "UTC", "NOTE"]
    # 02:30 does not exist on 2026-03-29 (02:00 -> 03:00): shifted to 03:30 CEST = 01:30Z.
    assert first.split() == [
        "1",
        "2026-03-29",
        "03:30:00",
        "+02:00",
        "2026-03-29",
        "01:30:00Z",
        "shifted",
        "from",
        "02:30:00",
        "(DST",
        "gap)",
    ]
    assert second.split() == ["2", "2026-03-30", "02:30:00", "+02:00", "2026-03-30", "00:30:00Z"]
    preview = PreviewResponse.model_validate_json(
        ok(await kjs_jobs(stack, key, "preview", "--every", "90m", "--count", "3", "--json"))
    )
    assert len(preview.fires) == 3 and preview.timezone == "UTC"
    utc = [fire.utc for fire in preview.fires]
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(utc)} == {5400.0}

    body = {
        "user_id": user_id,
        "name": "tokyo",
        "schedule": {"type": "cron", "expression": "0 9 * * *", "timezone": "Asia/Tokyo"},
        "target": {"type": "kafka", "topic": "cli-out"},
    }
    job_id = (await stack.submit(body))["job_id"]
    await stored(stack, job_id)
    lines = ok(await kjs_jobs(stack, key, "preview", job_id, "--count", "3")).splitlines()
    assert lines[0] == f'next 3 fire time(s) of job {job_id} (tokyo): cron "0 9 * * *" Asia/Tokyo'
    assert lines[1].split()[:3] == ["#", "LOCAL", "(Asia/Tokyo)"]
    for line in lines[2:]:
        _, _, local, offset, _, utc = line.split()
        assert (local, offset, utc) == ("09:00:00", "+09:00", "00:00:00Z")
    assert len(lines) == 5


async def test_refusals_exit_1_with_the_servers_message(
    stack: Stack, target: Target, user_id: str, key: str
) -> None:
    missing = str(uuid.uuid4())
    run = await kjs_jobs(stack, key, "get", missing)
    assert (run.code, run.out, run.err) == (1, "", "kjs: 404 Not Found: job not found\n")

    flags = ["--name", "x", "--every", "1h", "--http", "GET", target.url(user_id)]
    run = await kjs_jobs(stack, key, "create", *flags, "--user-id", f"{user_id}-other")
    assert run.code == 1
    assert run.err.startswith("kjs: 403 Forbidden: not allowed for user_id"), run.err
    assert len(run.err.splitlines()) == 1

    run = await kjs_jobs(
        stack,
        key,
        "create",
        "--name",
        "x",
        "--cron",
        "61 * * * *",
        "--http",
        "GET",
        "not a url",
        "--user-id",
        user_id,
    )
    assert run.code == 1
    first, *fields = run.err.splitlines()
    assert first == "kjs: 422 Unprocessable Entity"
    assert {line.split(":")[0] for line in fields} == {"schedule.expression", "target.url"}
    assert any("not a valid 5- or 6-field cron expression" in line for line in fields)

    run = await kjs_jobs(stack, "kjs_not-a-key", "list", "--user-id", user_id)
    assert run.code == 1 and run.err.startswith("kjs: 401 Unauthorized: "), run.err
    run = await kjs_jobs(stack, None, "list", "--user-id", user_id)
    assert run.code == 1
    assert run.err.strip().endswith("(set KJS_API_KEY or pass --key)"), run.err

    closed = f"http://127.0.0.1:{free_port()}"
    run = await kjs_jobs(stack, key, "list", "--user-id", user_id, "--url", closed)
    assert run.code == 1
    assert run.err.startswith(f"kjs: cannot reach the kjs API at {closed}: "), run.err
    assert len(run.err.splitlines()) == 1

    # --url and --key on the command line win over the environment.
    run = await kjs_jobs(
        stack,
        "kjs_not-a-key",
        "list",
        "--user-id",
        user_id,
        "--key",
        key,
        "--json",
        url=closed,
    )
    assert run.code == 1, "--key alone must not change the URL"
    run = await kjs_jobs(
        stack,
        "kjs_not-a-key",
        "--url",
        stack.api_url,
        "--key",
        key,
        "list",
        "--user-id",
        user_id,
        "--json",
        url=closed,
    )
    # Nothing was created by the refused submissions.
    assert JobPage.model_validate_json(ok(run)).jobs == []


@pytest.mark.parametrize(
    ("args", "file_text", "message"),
    [
        (["list", "--bogus"], None, "unrecognized arguments: --bogus"),
        (["list", "--status", "sleeping"], None, "invalid choice: 'sleeping'"),
        (["get", "not-a-uuid"], None, "not a job id: 'not-a-uuid'"),
        (["create", "-f", "/nonexistent/job.yaml"], None, "cannot read /nonexistent/job.yaml"),
        (["create", "-f", "{file}"], "name: [unclosed", "invalid YAML"),
        (["create", "-f", "{file}"], "schedule: {expression: */5 * * * *}", "must be quoted"),
        (["create", "-f", "{file}"], "- a list", "must be a mapping"),
        (["create", "--name", "x", "--every", "3 weeks"], None, "not a duration: '3 weeks'"),
        (["create", "--name", "x", "--at", "2030-01-01T10:00"], None, "has no offset"),
        (["create", "--name", "x"], None, "missing a schedule"),
        (["update", str(uuid.UUID(int=1))], None, "update needs -f FILE or a change"),
        (["preview"], None, "preview needs a JOB_ID"),
        (["list", "--url", "ftp://example.com"], None, "not an http(s) URL: 'ftp://example.com'"),
    ],
)
async def test_usage_errors_exit_2_with_one_line(
    stack: Stack,
    key: str,
    tmp_path: Path,
    args: list[str],
    file_text: str | None,
    message: str,
) -> None:
    path = tmp_path / "job.yaml"
    if file_text is not None:
        path.write_text(file_text)
    run = await kjs_jobs(stack, key, *(a.replace("{file}", str(path)) for a in args))
    assert run.code == 2, run
    assert message in run.err, run.err
    assert len(run.err.strip().splitlines()) == 1, run.err


async def test_list_watch_reprints_until_ctrl_c(stack: Stack, user_id: str, key: str) -> None:
    body = {
        "user_id": user_id,
        "name": "watched",
        "schedule": {"type": "interval", "every_seconds": 3600},
        "target": {"type": "kafka", "topic": "cli-out"},
    }
    job_id = (await stack.submit(body))["job_id"]
    await stored(stack, job_id)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kjs.cli",
        "jobs",
        "list",
        "--user-id",
        user_id,
        "--watch",
        "0.2",
        env=_env(stack.api_url, key),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    seen: list[str] = []

    async def reprinted() -> bool:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        seen.append(line.decode())
        return sum(1 for s in seen if s.startswith(job_id)) >= 3

    try:
        await eventually(reprinted, timeout_s=30, what="three listings")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    assert sum(1 for s in seen if s.startswith("ID ")) >= 3


async def test_create_and_list_without_user_id_act_for_the_keys_tenant(
    stack: Stack, target: Target, user_id: str, key: str
) -> None:
    flags = ["--name", "mine", "--every", "1h", "--http", "GET", target.url(user_id)]
    job_id = ok(await kjs_jobs(stack, key, "create", *flags)).strip()
    assert (await stored(stack, job_id))["user_id"] == user_id
    page = JobPage.model_validate_json(ok(await kjs_jobs(stack, key, "list", "--json")))
    assert [str(j.job_id) for j in page.jobs] == [job_id]

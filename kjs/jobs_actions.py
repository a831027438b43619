"""What each ``kjs jobs`` subcommand does, and how its failures become exit statuses."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from api.models import JobPage, JobView
from core.clock import utcnow
from kjs import jobs_render as render
from kjs.client import (
    ApiError,
    ApiUnreachable,
    Client,
    ClientError,
    InvalidRequest,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from kjs.jobs_spec import (
    UsageError,
    changes_from_args,
    job_from_args,
    parse_instant,
    schedule_from_flags,
)
from schemas.v1.schedules import Schedule

PROG = "kjs"
CLEAR = "\033[H\033[2J"

Action = Callable[[Client, argparse.Namespace], Awaitable[int]]


def _print_json(model: BaseModel, indent: int | None = 2) -> None:
    print(model.model_dump_json(indent=indent))


def _answer(args: argparse.Namespace, model: BaseModel, text: str) -> int:
    """Print the API's answer: its JSON with --json, else ``text``; exit status 0."""
    if args.json:
        _print_json(model)
    else:
        print(text)
    return 0


async def _create(client: Client, args: argparse.Namespace) -> int:
    accepted = await client.create(job_from_args(args))
    # Accepted means Kafka has it; wait until the shard stored it, so that the next command
    # (`kjs jobs get`) finds the job.
    if args.wait and await client.wait_stored(accepted.job_id) is None:
        print(f"kjs: job {accepted.job_id} accepted, not stored yet after 10s", file=sys.stderr)
    return _answer(args, accepted, str(accepted.job_id))


async def _jobs(client: Client, args: argparse.Namespace) -> JobPage:
    if not args.all:
        return await client.list_jobs(args.user_id, args.status, args.limit, args.cursor)
    jobs = [job async for job in client.iter_jobs(args.user_id, args.status, args.limit)]
    return JobPage(jobs=jobs, next_cursor=None)


def _show_jobs(page: JobPage, args: argparse.Namespace, indent: int | None = 2) -> None:
    if args.json:
        _print_json(page, indent)
        return
    print(render.jobs_table(page.jobs, utcnow()) if page.jobs else "no jobs")
    if page.next_cursor is not None:
        print(f"more: --cursor {page.next_cursor} (or --all)", file=sys.stderr)


async def _list(client: Client, args: argparse.Namespace) -> int:
    if args.watch is None:
        _show_jobs(await _jobs(client, args), args)
        return 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        try:
            page = await _jobs(client, args)
        except (ApiUnreachable, Unavailable) as exc:  # passing: keep watching
            print(f"{PROG}: {exc}", file=sys.stderr)
        else:
            if not args.json and sys.stdout.isatty():
                sys.stdout.write(CLEAR)
            # One document per line: --watch --json is a stream of JSON lines.
            _show_jobs(page, args, indent=None)
            if not args.json:
                print()
        sys.stdout.flush()
        try:
            await asyncio.wait_for(stop.wait(), args.watch)
        except TimeoutError:
            pass
    return 0


async def _get(client: Client, args: argparse.Namespace) -> int:
    job = await client.get(args.job_id)
    return _answer(args, job, render.job_summary(job, utcnow()))


async def _runs(client: Client, args: argparse.Namespace) -> int:
    if args.all:
        executions = [e async for e in client.iter_runs(args.job_id, args.limit)]
        more = None
    else:
        page = await client.runs(args.job_id, args.limit)
        executions, more = page.executions, page.next_cursor
    if args.json:
        print(json.dumps({"executions": [e.model_dump(mode="json") for e in executions]}, indent=2))
        return 0
    print(render.runs_table(executions) if executions else "no runs yet")
    if more is not None:
        print("more: --all, or a larger --limit", file=sys.stderr)
    return 0


async def _logs(client: Client, args: argparse.Namespace) -> int:
    execution = await client.execution(args.execution_id)
    return _answer(args, execution, render.execution_report(execution))


async def _cancel(client: Client, args: argparse.Namespace) -> int:
    accepted = await client.cancel(args.job_id)
    return _answer(args, accepted, f"job {accepted.job_id}: {accepted.status}")


def _lifecycle(name: str) -> Action:
    async def act(client: Client, args: argparse.Namespace) -> int:
        method = getattr(client, name)
        accepted = await method(args.job_id)
        return _answer(
            args, accepted, f"job {accepted.job_id}: {accepted.action} {accepted.status}"
        )

    return act


async def _update(client: Client, args: argparse.Namespace) -> int:
    accepted = await client.update(args.job_id, changes_from_args(args))
    return _answer(args, accepted, f"job {accepted.job_id}: {accepted.action} {accepted.status}")


async def _backfill(client: Client, args: argparse.Namespace) -> int:
    accepted = await client.backfill(
        args.job_id, parse_instant(args.from_), parse_instant(args.to), args.overlap
    )
    text = f"job {accepted.job_id}: backfill of {accepted.occurrences} occurrences accepted"
    return _answer(args, accepted, text)


_SCHEDULE: TypeAdapter[Any] = TypeAdapter(Schedule)


async def _preview(client: Client, args: argparse.Namespace) -> int:
    flags = schedule_from_flags(args)
    from_ = parse_instant(args.from_) if args.from_ is not None else None
    schedule: Any
    if args.job_id is not None:
        if flags is not None:
            raise UsageError("preview takes a JOB_ID or schedule flags, not both")
        job: JobView = await client.get(args.job_id)
        schedule, description = job.schedule, f"job {job.job_id} ({job.name})"
    elif flags is None:
        raise UsageError("preview needs a JOB_ID, or --cron (--tz), --every or --at")
    else:
        schedule = flags
    preview = await client.preview(schedule, args.count, from_)
    if args.json:
        _print_json(preview)
        return 0
    if args.job_id is None:
        try:  # the API accepted it, so it is a valid schedule
            description = render.schedule_text(_SCHEDULE.validate_python(flags))
        except ValidationError:
            description = json.dumps(flags)
    else:
        description += ": " + render.schedule_text(schedule)
    print(render.preview_table(preview, description))
    return 0


ACTIONS: dict[str, Action] = {
    "create": _create,
    "list": _list,
    "get": _get,
    "runs": _runs,
    "logs": _logs,
    "cancel": _cancel,
    "pause": _lifecycle("pause"),
    "resume": _lifecycle("resume"),
    "trigger": _lifecycle("trigger"),
    "update": _update,
    "backfill": _backfill,
    "preview": _preview,
}


# -- running one -------------------------------------------------------------------------------


def _line(text: str) -> str:
    return " ".join(str(text).split())


def _refused(exc: ApiError, has_key: bool) -> None:
    if isinstance(exc, InvalidRequest) and len(exc.errors) == 1:
        field, message = exc.errors[0]
        print(f"{PROG}: {exc.status} {exc.reason}: {field}: {_line(message)}", file=sys.stderr)
        return
    if isinstance(exc, InvalidRequest) and exc.errors:
        print(f"{PROG}: {exc.status} {exc.reason}", file=sys.stderr)
        for field, message in exc.errors:
            print(f"{field}: {_line(message)}", file=sys.stderr)
        return
    hint = ""
    if isinstance(exc, TooManyRequests | Unavailable) and exc.retry_after is not None:
        hint = f" (retry after {exc.retry_after:g}s)"
    elif isinstance(exc, Unauthorized) and not has_key:
        hint = " (set KJS_API_KEY or pass --key)"
    print(f"{PROG}: {exc.status} {exc.reason}: {_line(exc.message)}{hint}", file=sys.stderr)


async def _run(args: argparse.Namespace) -> int:
    try:
        client = Client(args.url, args.key)
    except ValueError as exc:  # a bad --url / KJS_API_URL, or an invalid setting
        print(f"{PROG}: {_line(str(exc).splitlines()[0])}", file=sys.stderr)
        return 2
    async with client:
        try:
            return await ACTIONS[args.action](client, args)
        except UsageError as exc:
            print(f"{PROG}: {_line(str(exc))}", file=sys.stderr)
            return 2
        except ApiError as exc:
            _refused(exc, client.has_key)
            return 1
        except ClientError as exc:  # unreachable, or not the API's answer
            print(f"{PROG}: {_line(str(exc))}", file=sys.stderr)
            return 1


def run(args: argparse.Namespace) -> int:
    """``kjs jobs ...``: the exit status."""
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130

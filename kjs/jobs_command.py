"""``kjs jobs``: jobs through the HTTP API, as a user of the API (not an operator).

Exit status: 0 done; 1 the API refused (its message on stderr, one line, or one line per
wrong field) or could not be reached; 2 a usage error (flags, an unreadable file, invalid
JSON or YAML). The API's address and key come from ``KJS_API_URL`` and ``KJS_API_KEY``, or
``--url`` and ``--key``.

This module is the command line only (it is imported by every ``kjs`` command, so it stays
light); ``kjs.jobs_actions`` does the work, ``kjs.jobs_spec`` builds request bodies and
``kjs.jobs_render`` prints answers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, NoReturn
from uuid import UUID

from schemas.v1.statuses import SHOWN_JOB_STATUSES

DEFAULT_WATCH_S = 2.0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (and unknown flags refused here, not by ``kjs`` itself)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _uuid(what: str) -> Callable[[str], UUID]:
    def parse(text: str) -> UUID:
        try:
            return UUID(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what} id: {text!r}") from None

    parse.__name__ = f"{what} id"
    return parse


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return n


def _positive_float(text: str) -> float:
    try:
        n = float(text)
    except ValueError:
        n = 0.0
    if not n > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return n


def _schedule_flags(p: argparse.ArgumentParser) -> None:
    when = p.add_mutually_exclusive_group()
    when.add_argument("--cron", metavar="EXPR", help="a 5- or 6-field cron expression")
    when.add_argument("--every", metavar="DURATION", help="an interval: 30s, 5m, 1h30m")
    when.add_argument("--at", metavar="TIME", help="once, at an RFC 3339 time")
    when.add_argument("--in", dest="in_", metavar="DURATION", help="once, this long from now")
    p.add_argument("--tz", metavar="ZONE", help="the IANA zone of --cron (or of a naive --at)")
    p.add_argument(
        "--calendar", action="append", metavar="NAME", help="skip a named calendar's times"
    )
    p.add_argument(
        "--exclude-cron", action="append", metavar="EXPR", help="skip the times EXPR matches"
    )
    p.add_argument(
        "--exclude-dates",
        action="append",
        metavar="DATE[..DATE]",
        help="skip these local dates (both ends included)",
    )


def _job_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--file", metavar="FILE", help="the body as JSON or YAML (-: stdin)")
    p.add_argument("--name", help="the job's name")
    _schedule_flags(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--http", nargs=2, metavar=("METHOD", "URL"), help="call URL (GET, POST, PUT, ...)"
    )
    what.add_argument("--kafka", metavar="TOPIC", help="produce a record to TOPIC")
    p.add_argument("--header", action="append", metavar="NAME:VALUE", help="a header (repeatable)")
    p.add_argument("--body", help="the request body / record value (JSON if it parses)")
    p.add_argument("--record-key", metavar="KEY", help="the record key of a --kafka target")
    p.add_argument("--timeout", metavar="DURATION", help="the target's timeout")
    p.add_argument("--priority", choices=("critical", "normal", "low"))
    p.add_argument("--max-attempts", type=_positive_int, metavar="N", help="retry up to N-1 times")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``kjs jobs`` and its subcommands on ``kjs``'s subparsers."""
    jobs = sub.add_parser(
        "jobs",
        help="jobs through the HTTP API: create, list, get, runs, logs, cancel, backfill, ...",
        description="Create, inspect and control jobs through the HTTP API (KJS_API_URL, "
        "KJS_API_KEY). Exit status: 0 done, 1 refused by the API or unreachable, 2 usage.",
    )
    jobs.add_argument("--url", help="the API's base URL (default: KJS_API_URL)")
    jobs.add_argument("--key", help="the API key (default: KJS_API_KEY)")
    common = _Parser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="the API's base URL")
    common.add_argument("--key", default=argparse.SUPPRESS, help="the API key")
    common.add_argument("--json", action="store_true", help="print the API's JSON")
    actions = jobs.add_subparsers(dest="action", required=True, parser_class=_Parser)

    def action(name: str, help: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help, description=help, parents=[common])

    job_id = _uuid("a job")
    c = action("create", "submit a job (from -f FILE and/or flags); prints its id")
    _job_flags(c)
    c.add_argument("--user-id", help="the tenant (default: the API key's)")
    c.add_argument("--idempotency-key", metavar="KEY", help="the same key names the same job")
    c.add_argument(
        "--concurrency",
        metavar="KEY:LIMIT",
        help="at most LIMIT runs of the tenant's jobs with KEY at once (e.g. reports:3)",
    )
    c.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="return once Kafka has the command, before the job is stored",
    )

    ls = action("list", "a tenant's jobs, newest first")
    ls.add_argument("--status", choices=SHOWN_JOB_STATUSES)
    ls.add_argument("--user-id", help="the tenant (default: the API key's)")
    ls.add_argument("--limit", type=_positive_int, default=50, help="jobs shown (default 50)")
    ls.add_argument("--cursor", help="continue a listing (the cursor it printed)")
    ls.add_argument("--all", action="store_true", help="every page")
    ls.add_argument(
        "--watch",
        nargs="?",
        type=_positive_float,
        const=DEFAULT_WATCH_S,
        metavar="SECONDS",
        help=f"reprint every SECONDS (default {DEFAULT_WATCH_S:g}) until Ctrl-C",
    )

    action("get", "a job's status, schedule, target and last run").add_argument(
        "job_id", type=job_id, metavar="JOB_ID"
    )
    r = action("runs", "a job's executions (attempts), newest first")
    r.add_argument("job_id", type=job_id, metavar="JOB_ID")
    r.add_argument("--limit", type=_positive_int, default=50, help="runs shown (default 50)")
    r.add_argument("--all", action="store_true", help="every page")
    action("logs", "one execution: times, worker, http status, error, output").add_argument(
        "execution_id", type=_uuid("an execution"), metavar="EXECUTION_ID"
    )
    for name, help in (
        ("cancel", "cancel a job"),
        ("pause", "pause a scheduled job"),
        ("resume", "resume a paused job"),
        ("trigger", "run a job once more, now"),
    ):
        action(name, help).add_argument("job_id", type=job_id, metavar="JOB_ID")
    b = action("backfill", "run a recurring job's occurrences in a past range, each once")
    b.add_argument("job_id", type=job_id, metavar="JOB_ID")
    b.add_argument("--from", dest="from_", required=True, metavar="TIME", help="range start")
    b.add_argument("--to", required=True, metavar="TIME", help="range end (excluded, not future)")
    b.add_argument(
        "--overlap",
        choices=("allow", "forbid", "replace", "buffer_one"),
        help="allow: all at once; others: one at a time (default: the job's policy)",
    )
    u = action("update", "change a job's name, schedule, target, priority or retries")
    u.add_argument("job_id", type=job_id, metavar="JOB_ID")
    _job_flags(u)
    pv = action("preview", "the next fire times of a job's schedule, or of --cron/--every/--at")
    pv.add_argument("job_id", nargs="?", type=job_id, metavar="JOB_ID")
    _schedule_flags(pv)
    pv.add_argument("--count", type=_positive_int, default=10, help="fire times (default 10)")
    pv.add_argument("--from", dest="from_", metavar="TIME", help="from this time (default now)")


def run(args: argparse.Namespace) -> int:
    """``kjs jobs ...``: the exit status."""
    from kjs.jobs_actions import run as run_action

    return run_action(args)

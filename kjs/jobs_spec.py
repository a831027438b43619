"""``kjs jobs``'s request bodies, from a JSON/YAML file and from flags.

A file gives the whole body; flags build it, or replace the parts of the file's that they
name (``-f job.yaml --name other``). Nothing here validates what the API validates: the API
names every wrong field in its answer. What is checked here is what only the command line
can get wrong (a duration, a header without a colon, a naive time), as a :class:`UsageError`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml  # type: ignore[import-untyped]

from core.clock import utcnow


class UsageError(Exception):
    """A mistake on the command line or in a file given to it (exit status 2)."""


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``5m``, ``1h30m``, ``250ms``, ``2d`` or a bare ``90`` (seconds)."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _PART.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(value) or not value:
            raise UsageError(f"not a duration: {text!r} (e.g. 30s, 5m, 1h30m, 250ms, 2d)") from None
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise UsageError(f"not a positive duration: {text!r}")
    return seconds


def parse_concurrency(text: str) -> dict[str, Any]:
    """``reports:3``: the key (which may hold colons) and the limit after the last colon. The
    limit's range and the key's length are the API's to check (422 naming the field)."""
    key, sep, limit = text.rpartition(":")
    if not sep or not key or not limit.strip().isdigit():
        raise UsageError(f"not KEY:LIMIT: {text!r} (e.g. reports:3)")
    return {"key": key, "limit": int(limit)}


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown IANA time zone: {name!r} (e.g. Europe/Berlin)") from None


def parse_instant(text: str, tz: str | None = None) -> datetime:
    """An RFC 3339 time; one without an offset is read in ``tz`` (refused without it)."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"not a date-time: {text!r} (e.g. 2026-12-05T10:00:00Z)") from None
    if at.tzinfo is None:
        if tz is None:
            raise UsageError(f"{text!r} has no offset: add one (Z, +01:00) or --tz ZONE")
        at = at.replace(tzinfo=zone(tz))
    return at


def _plain(value: Any) -> Any:
    """YAML's dates and times as the RFC 3339 strings JSON needs (``at: 2026-12-05T10:00Z``
    is a datetime to YAML); everything else as it is."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _one_line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    text = f"{context}: {problem}" if context else problem
    if mark is not None:
        text += f" at line {mark.line + 1}, column {mark.column + 1}"
    if context and "alias" in context:
        text += ' (a value starting with * must be quoted, as in "*/5 * * * *")'
    return text


def read_document(path: str) -> dict[str, Any]:
    """The JSON (``*.json``) or YAML file at ``path`` (``-``: stdin), which must be a mapping."""
    name = "stdin" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {name}: not UTF-8 text") from None
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{name}: invalid JSON: {exc}") from None
    else:
        try:
            data = _plain(yaml.safe_load(text))
        except yaml.YAMLError as exc:
            raise UsageError(f"{name}: invalid YAML: {_one_line(exc)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{name}: must be a mapping (a job's fields), not {type(data).__name__}")
    return data


def _exclude(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--calendar``, ``--exclude-cron`` and ``--exclude-dates`` as a schedule's exclude."""
    calendars = getattr(args, "calendar", None) or []
    crons = getattr(args, "exclude_cron", None) or []
    dates = []
    for span in getattr(args, "exclude_dates", None) or []:
        first, _, last = span.partition("..")
        dates.append({"from": first.strip(), "to": (last or first).strip()})
    if not (calendars or crons or dates):
        return None
    exclude: dict[str, Any] = {"calendars": calendars, "cron": crons, "dates": dates}
    return {k: v for k, v in exclude.items() if v}


def schedule_from_flags(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--cron``/``--every``/``--at``/``--in`` (with ``--tz``, and a recurring one's
    exclusions) as a schedule, or None."""
    schedule = _when(args)
    exclude = _exclude(args)
    if exclude is not None:
        if schedule is None or schedule["type"] == "once":
            raise UsageError("--calendar/--exclude-* apply to --cron and --every")
        schedule["exclude"] = exclude
    return schedule


def _when(args: argparse.Namespace) -> dict[str, Any] | None:
    tz: str | None = args.tz
    if args.cron is not None:
        schedule: dict[str, Any] = {"type": "cron", "expression": args.cron}
        if tz is not None:
            zone(tz)
            schedule["timezone"] = tz
        return schedule
    if args.every is not None:
        if tz is not None:
            raise UsageError("--tz applies to --cron and --at, not to --every")
        return {"type": "interval", "every_seconds": parse_duration(args.every)}
    if args.at is not None:
        return {"type": "once", "at": parse_instant(args.at, tz).isoformat()}
    if getattr(args, "in_", None) is not None:
        if tz is not None:
            raise UsageError("--tz applies to --cron and --at, not to --in")
        at = utcnow() + timedelta(seconds=parse_duration(args.in_))
        return {"type": "once", "at": at.isoformat()}
    if tz is not None:
        raise UsageError("--tz needs --cron or --at")
    return None


def _headers(pairs: list[str] | None) -> dict[str, str]:
    headers = {}
    for pair in pairs or []:
        name, colon, value = pair.partition(":")
        if not colon or not name.strip():
            raise UsageError(f"--header needs NAME:VALUE, not {pair!r}")
        headers[name.strip()] = value.strip()
    return headers


def _json_or_text(text: str) -> Any:
    """A --body that parses as JSON is sent as JSON; anything else as the text it is."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def target_from_flags(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--http METHOD URL`` or ``--kafka TOPIC`` with their options, or None."""
    target: dict[str, Any]
    if args.http is not None:
        method, url = args.http
        target = {"type": "http", "method": method.upper(), "url": url}
        if args.record_key is not None:
            raise UsageError("--record-key is for --kafka targets")
    elif args.kafka is not None:
        target = {"type": "kafka", "topic": args.kafka}
        if args.record_key is not None:
            target["key"] = args.record_key
    else:
        for flag, value in (
            ("--header", args.header),
            ("--body", args.body),
            ("--timeout", args.timeout),
            ("--record-key", args.record_key),
        ):
            if value is not None:
                raise UsageError(f"{flag} needs a target: --http METHOD URL or --kafka TOPIC")
        return None
    if args.header:
        target["headers"] = _headers(args.header)
    if args.body is not None:
        target["body" if target["type"] == "http" else "value"] = _json_or_text(args.body)
    if args.timeout is not None:
        target["timeout_s"] = parse_duration(args.timeout)
    return target


def _common(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    body = dict(base)
    if args.name is not None:
        body["name"] = args.name
    schedule = schedule_from_flags(args)
    if schedule is not None:
        body["schedule"] = schedule
    target = target_from_flags(args)
    if target is not None:
        body["target"] = target
    if args.priority is not None:
        body["priority"] = args.priority
    if args.max_attempts is not None:
        retry = body.get("retry")
        body["retry"] = {
            **(retry if isinstance(retry, dict) else {}),
            "max_attempts": args.max_attempts,
        }
    return body


def job_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The body of a create: ``-f FILE`` and/or flags. ``user_id`` only when one is given."""
    body = _common(args, read_document(args.file) if args.file else {})
    if args.user_id is not None:
        body["user_id"] = args.user_id
    if args.idempotency_key is not None:
        body["idempotency_key"] = args.idempotency_key
    if getattr(args, "concurrency", None) is not None:
        body["concurrency"] = parse_concurrency(args.concurrency)
    if not args.file:
        missing = [
            what
            for what, field in (
                ("a name (--name)", "name"),
                ("a schedule (--cron, --every, --at or --in)", "schedule"),
                ("a target (--http or --kafka)", "target"),
            )
            if field not in body
        ]
        if missing:
            raise UsageError(f"create needs -f FILE, or flags; missing {', '.join(missing)}")
    return body


def changes_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The body of an update: ``-f FILE`` and/or flags; at least one change."""
    body = _common(args, read_document(args.file) if args.file else {})
    if not body:
        raise UsageError(
            "update needs -f FILE or a change: --name, --cron/--every/--at/--in, "
            "--http/--kafka, --priority, --max-attempts"
        )
    return body

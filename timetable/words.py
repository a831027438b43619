"""Schedules and lengths of time in words, for people: "every 5 minutes, Europe/Berlin",
"at 09:00, Monday to Friday, Europe/Berlin", "every 90 seconds", "in 4m12s", "3s ago".

Pure. Cron expressions that fit a common shape (every N seconds/minutes/hours, hourly, daily,
on some weekdays, on a day of the month) are said in words; any other is shown as written, so
the words never claim more than the expression says. A cron schedule always names its zone,
since its wall times mean nothing without it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.v1.schedules import CronSchedule, IntervalSchedule, OnceSchedule

_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAY_NAMES = {name[:3].lower(): i for i, name in enumerate(_DAYS)}
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60))


def schedule_words(schedule: OnceSchedule | CronSchedule | IntervalSchedule) -> str:
    if isinstance(schedule, CronSchedule):
        return f"{cron_words(schedule.expression)}, {schedule.timezone}"
    if isinstance(schedule, IntervalSchedule):
        return every(schedule.every_seconds)
    at = schedule.at.astimezone(UTC)
    return f"once, at {at:%Y-%m-%d %H:%M:%S} UTC"


def every(seconds: float) -> str:
    """``every 5 minutes``, ``every hour``, ``every 90 seconds``, ``every 1.5 seconds``."""
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return _count(round(seconds // size), unit)
    return _count(seconds, "second")


def _count(n: float, unit: str) -> str:
    if n == 1:
        return f"every {unit}"
    return f"every {n:g} {unit}s"


def span(seconds: float) -> str:
    """A length of time, rounded for reading: ``45s``, ``4m12s``, ``3h05m``, ``2d4h``."""
    s = round(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def took(seconds: float) -> str:
    """How long something ran: ``0.123s``, ``12.4s``, ``4m12s``."""
    if seconds < 10:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return span(seconds)


def relative(at: datetime, now: datetime) -> str:
    """``in 4m12s`` or ``3s ago``."""
    delta = (at - now).total_seconds()
    return f"in {span(delta)}" if delta >= 0 else f"{span(delta)} ago"


def cron_words(expression: str) -> str:
    """The expression in words when it has a common shape, else ``cron "<expression>"``."""
    fields = expression.split()
    seconds = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, dom, month, dow = fields
    said = _said(seconds, minute, hour, dom, month, dow)
    return said if said is not None else f'cron "{expression}"'


def _said(seconds: str, minute: str, hour: str, dom: str, month: str, dow: str) -> str | None:
    if month != "*":
        return None
    days = _days(dom, dow)
    if days is None:
        return None
    step_s = _step(seconds)
    if minute == hour == "*" and step_s is not None:  # */N * * * * *
        return _with_days(every(step_s), days)
    if not _number(seconds, 59):
        return None
    step_m = _step(minute)
    if hour == "*" and step_m is not None and seconds == "0":  # */N * * * *
        return _with_days(every(step_m * 60), days)
    if not _number(minute, 59):
        return None
    at_minute = f":{int(minute):02d}" + (f":{int(seconds):02d}" if seconds != "0" else "")
    step_h = _step(hour)
    if step_h is not None:  # M */N * * * or M * * * *
        return _with_days(f"{every(step_h * 3600)} at {at_minute}", days)
    if not _number(hour, 23):
        return None
    clock = f"{int(hour):02d}{at_minute}"
    if days == "":
        return f"every day at {clock}"
    return f"at {clock}, {days}"


def _with_days(text: str, days: str) -> str:
    return text if days == "" else f"{text}, {days}"


def _step(field: str) -> int | None:
    """``*`` is 1, ``*/N`` is N; anything else None."""
    if field == "*":
        return 1
    if field.startswith("*/") and field[2:].isdigit() and int(field[2:]) > 0:
        return int(field[2:])
    return None


def _number(field: str, most: int) -> bool:
    return field.isdigit() and int(field) <= most


def _days(dom: str, dow: str) -> str | None:
    """Which days, in words ("" for every day), or None when it is not a simple shape."""
    if dom == "*" and dow in ("*", "?"):
        return ""
    if dow in ("*", "?") and dom.isdigit() and 1 <= int(dom) <= 31:
        return f"on day {int(dom)} of the month"
    if dom not in ("*", "?"):
        return None
    weekdays = _weekdays(dow)
    if weekdays is None:
        return None
    if weekdays == [1, 2, 3, 4, 5]:
        return "Monday to Friday"
    if weekdays == [0, 6]:
        return "on Saturday and Sunday"
    names = [_DAYS[d] for d in weekdays]
    if len(names) == 1:
        return f"on {names[0]}"
    return "on " + ", ".join(names[:-1]) + " and " + names[-1]


def _weekdays(dow: str) -> list[int] | None:
    days: set[int] = set()
    for part in dow.lower().split(","):
        low, _, high = part.partition("-")
        first, last = _weekday(low), _weekday(high) if high else _weekday(low)
        if first is None or last is None or last < first:
            return None
        days.update(range(first, last + 1))
    return sorted({d % 7 for d in days})  # 7 is Sunday too


def _weekday(text: str) -> int | None:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    return _DAY_NAMES.get(text)

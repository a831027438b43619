"""When does a job fire? Pure functions of the schedule and the clock.

Times are UTC in and out. ``max_runs`` is the caller's to enforce (it knows the run count;
:func:`exhausted` says when it is reached); ``start_at`` and ``end_at`` are enforced here.

Cron expressions name *wall-clock* times in the job's IANA zone, and daylight saving makes the
wall clock skip some of them and repeat others. Rather than trust croniter across transitions,
the engine walks the zone's UTC timeline one :class:`~timetable.wallclock.Segment` (a stretch
of constant offset) at a time and asks croniter only for pure wall arithmetic on *naive*
times, where it has no zone to get wrong:

- the wall times a segment shows are ``[start + offset, end + offset)``; each one that matches
  the expression is the instant ``wall - offset``;
- when the offset grew at the segment's start (a gap, clocks jumped forward), the wall times
  ``[start + before, start + offset)`` never showed. ``gap="shift"`` runs each matching one at
  ``wall - before``: the same distance after the jump (02:30 in a 02:00->03:00 jump runs at
  03:30), which is zoneinfo's ``fold=0`` reading of a missing time. ``gap="skip"`` drops them;
- when the offset shrank (a fold, clocks fell back), the wall times
  ``[start + offset, start + before)`` were already shown by the previous segment: they are
  their second pass (``fold=1``), kept only under ``fold="both"``.

Segments are disjoint and ordered in UTC, so the first segment with a candidate holds the next
run, and within a segment the earliest candidate wins: runs come out in UTC order, each instant
once (a shifted run landing on a real one is that one run), with no look-back window. Away from
a transition this costs one cached segment lookup and one croniter step per call.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal
from uuid import UUID

from croniter import CroniterBadDateError, croniter

from schemas.v1.schedules import CronSchedule, IntervalSchedule, OnceSchedule
from timetable.wallclock import (
    EPOCH,
    Segment,
    ceil_seconds,
    from_seconds,
    segment_at,
    to_seconds,
    wall_datetime,
)

Schedule = OnceSchedule | CronSchedule | IntervalSchedule
MICROSECOND = timedelta(microseconds=1)


# --- the public API -----------------------------------------------------------------------


def first_run(schedule: Schedule, now: datetime, anchor: datetime) -> datetime | None:
    """The first occurrence of a newly created job.

    A ``once`` job returns its time even when it lies slightly in the past: the caller has
    already refused times beyond the grace, and a late one-shot should still run.
    """
    if isinstance(schedule, OnceSchedule):
        return _as_utc(schedule.at)
    return next_run(schedule, after=now, anchor=anchor)


def next_run(schedule: Schedule, after: datetime, anchor: datetime) -> datetime | None:
    """The first occurrence strictly after ``after``; ``None`` when there is none.

    ``anchor`` (the job's creation time) is the origin of an interval without ``start_at``,
    so that a late fire never drifts the later ones; cron and once schedules ignore it.
    """
    found = occurrences(schedule, after, anchor, limit=1)
    return found[0] if found else None


def occurrences(
    schedule: Schedule,
    after: datetime,
    anchor: datetime,
    limit: int,
    until: datetime | None = None,
) -> list[datetime]:
    """The next ``limit`` occurrences strictly after ``after`` and not after ``until``."""
    if limit <= 0:
        return []
    if isinstance(schedule, CronSchedule):
        return [fire.at for fire in cron_fires(schedule, after, limit, until)]
    if isinstance(schedule, IntervalSchedule):
        return _interval_occurrences(schedule, after, anchor, limit, until)
    at = _as_utc(schedule.at)
    return [at] if at > after and (until is None or at <= until) else []


def last_run(
    schedule: Schedule, until: datetime, anchor: datetime, after: datetime | None = None
) -> datetime | None:
    """The latest occurrence at or before ``until`` (and strictly after ``after``, if given).

    What catch-up ``latest`` needs after a long outage, in one step instead of enumerating
    every missed occurrence of an every-second cron.
    """
    found: datetime | None
    if isinstance(schedule, CronSchedule):
        found = _cron_last(schedule, until)
    elif isinstance(schedule, IntervalSchedule):
        found = _interval_last(schedule, until, anchor)
    else:
        at = _as_utc(schedule.at)
        found = at if at <= until else None
    return found if found is not None and (after is None or found > after) else None


def exhausted(schedule: Schedule, runs_done: int) -> bool:
    """Whether a job that has run ``runs_done`` times is done (``max_runs``; once: one run)."""
    if isinstance(schedule, OnceSchedule):
        return runs_done >= 1
    return schedule.max_runs is not None and runs_done >= schedule.max_runs


def jitter_delay(schedule: Schedule, job_id: UUID, occurrence: datetime) -> timedelta:
    """The delay of one occurrence's start: uniform in ``[0, jitter_s)``, at microseconds.

    A hash of (job, occurrence instant), not a random draw, so a restarted or replaced shard
    computes the same delay, and replicas agree. Python's ``hash`` is salted per process,
    hence BLAKE2.
    """
    if isinstance(schedule, OnceSchedule) or schedule.jitter_s <= 0:
        return timedelta(0)
    # Delays are whole microseconds below round(jitter_s): each one is < jitter_s.
    bound_us = round(schedule.jitter_s * 1_000_000)
    if bound_us == 0:
        return timedelta(0)
    instant_us = (occurrence - EPOCH) // MICROSECOND
    digest = hashlib.blake2b(
        job_id.bytes + instant_us.to_bytes(16, "big", signed=True), digest_size=8
    ).digest()
    return timedelta(microseconds=(int.from_bytes(digest, "big") * bound_us) >> 64)


def fold_policy(schedule: CronSchedule) -> Literal["first", "both"]:
    """The job's fold policy, the default resolved.

    Unset means ``both`` when the hour field names every hour (``*``, or an equivalent such
    as ``*/1`` that croniter normalises to it): an hourly or every-N-minutes cron keeps its
    rhythm in absolute time and neither doubles nor skips. Otherwise ``first``: a daily 02:30
    job runs once a day.
    """
    if schedule.dst.fold is not None:
        return schedule.dst.fold
    return "both" if _every_hour(schedule.expression) else "first"


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# --- cron ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CronFire:
    """One cron run: its instant, and the wall time the expression named.

    ``nominal`` differs from the run's local time only for a shifted run (the named time fell
    in a gap); it is a naive wall-clock datetime in the job's zone.
    """

    at: datetime
    nominal: datetime


@dataclass(frozen=True, slots=True)
class _Fire:
    at: int  # UTC Unix seconds
    wall: int  # the wall time the expression named, as naive Unix seconds


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the walk needs of a cron schedule, in integer seconds."""

    expression: str
    zone: str
    shift: bool  # gap policy: run missing wall times after the jump
    both: bool  # fold policy: run repeated wall times on each pass
    lower: int  # no run before this instant (start_at)
    upper: int | None  # no run after this instant (end_at)


def cron_fires(
    schedule: CronSchedule, after: datetime, limit: int, until: datetime | None = None
) -> list[CronFire]:
    """The next ``limit`` runs of a cron strictly after ``after`` and not after ``until``."""
    if limit <= 0:
        return []
    plan = _plan(schedule)
    # Runs are whole seconds: "> after" is "> floor(after)", and ">= start_at" is
    # "> ceil(start_at) - 1".
    cursor = max(to_seconds(after), plan.lower - 1)
    upper = plan.upper if until is None else _min_or(plan.upper, to_seconds(until))
    result: list[CronFire] = []
    try:
        for fire in _forward(plan, cursor):
            if upper is not None and fire.at > upper:
                break
            result.append(CronFire(from_seconds(fire.at), wall_datetime(fire.wall)))
            if len(result) == limit:  # before asking the walk for one more: a croniter step
                break
    except _OUT_OF_RANGE:  # the walk reached year 9999: no datetime lies beyond
        pass
    return result


def _cron_last(schedule: CronSchedule, until: datetime) -> datetime | None:
    plan = _plan(schedule)
    bound = _min_or(plan.upper, to_seconds(until))
    try:
        fire = _backward(plan, bound)
        return from_seconds(fire.at) if fire is not None else None
    except _OUT_OF_RANGE:  # the walk reached year 1
        return None


def _plan(schedule: CronSchedule) -> _Plan:
    return _Plan(
        expression=schedule.expression,
        zone=schedule.timezone,
        shift=schedule.dst.gap == "shift",
        both=fold_policy(schedule) == "both",
        lower=ceil_seconds(schedule.start_at) if schedule.start_at else _MIN_INSTANT,
        upper=to_seconds(schedule.end_at) if schedule.end_at else None,
    )


def _forward(plan: _Plan, cursor: int) -> Iterator[_Fire]:
    """Every run strictly after the instant ``cursor``, in UTC order."""
    walls = _walls(plan.expression)
    segment = segment_at(plan.zone, cursor)
    while True:
        fire, more = _first_in(plan, walls, segment, cursor)
        if fire is not None:
            yield fire
            cursor = fire.at
            segment = segment_at(plan.zone, cursor)
        elif not more:
            return
        else:
            segment = segment_at(plan.zone, segment.end)


def _first_in(
    plan: _Plan, walls: _Walls, segment: Segment, cursor: int
) -> tuple[_Fire | None, bool]:
    """The segment's earliest run after ``cursor``, and whether any wall time matches later.

    Real runs in a segment start at the segment's first wall time; under ``fold="first"``
    they start after the part a fold repeats. Shifted runs of a gap at the segment's start
    lie in ``[start, start + jump)``; the earlier of the two candidates wins, and on a tie
    it is the same instant, reported as the real run.
    """
    start, end, offset, before = segment.start, segment.end, segment.offset, segment.before
    first_wall = _first_wall(plan, segment)
    # A real wall time w is the instant w - offset: after the cursor iff w > cursor + offset.
    wall = walls.after(max(cursor + offset, first_wall - 1))
    best = _Fire(wall - offset, wall) if wall is not None and wall < end + offset else None
    if before < offset and plan.shift:
        # A missing wall time w (in [start + before, start + offset)) runs at w - before:
        # after the cursor iff w > cursor + before.
        missing = walls.after(max(cursor + before, start + before - 1))
        if missing is not None and missing < start + offset:
            shifted = _Fire(missing - before, missing)
            if best is None or shifted.at < best.at:
                best = shifted
    return best, wall is not None


def _first_wall(plan: _Plan, segment: Segment) -> int:
    """The first wall time of the segment that can be a run.

    After a fall-back (``before > offset``) the segment opens by showing again the wall
    times ``[start + offset, start + before)`` that the previous segment ended with: their
    second pass, a run only under ``fold="both"``.
    """
    if segment.before > segment.offset and not plan.both:
        return segment.start + segment.before
    return segment.start + segment.offset


def _backward(plan: _Plan, bound: int) -> _Fire | None:
    """The latest run at or before the instant ``bound`` and not before ``plan.lower``."""
    walls = _walls(plan.expression)
    segment = segment_at(plan.zone, bound)
    while segment.end > plan.lower:
        fire, more = _last_in(plan, walls, segment, bound)
        if fire is not None:
            return fire if fire.at >= plan.lower else None
        if not more:
            return None
        segment = segment_at(plan.zone, segment.start - 1)
    return None


def _last_in(plan: _Plan, walls: _Walls, segment: Segment, bound: int) -> tuple[_Fire | None, bool]:
    """The mirror of :func:`_first_in`: the segment's latest run at or before ``bound``."""
    start, end, offset, before = segment.start, segment.end, segment.offset, segment.before
    first_wall = _first_wall(plan, segment)
    wall = walls.before(min(bound + offset, end + offset - 1) + 1)
    best = _Fire(wall - offset, wall) if wall is not None and wall >= first_wall else None
    if before < offset and plan.shift:
        last_missing = min(bound + before, start + offset - 1)
        missing = walls.before(last_missing + 1) if last_missing >= start + before else None
        if missing is not None and missing >= start + before:
            shifted = _Fire(missing - before, missing)
            if best is None or shifted.at > best.at:
                best = shifted
    return best, wall is not None


class _Walls:
    """Matching wall times of one expression, by pure naive arithmetic (no zone).

    A croniter costs ~35 µs to build and ~7 µs to step, so one is kept per expression and
    re-aimed with ``start_time`` on every call; ``start_time`` resets all of its state.
    """

    def __init__(self, expression: str) -> None:
        seconds_first = len(expression.split()) == 6
        # A sixth field is seconds, first (as in Quartz, Spring and Dkron): "*/5 * * * * *".
        self._iter = croniter(expression, 0.0, second_at_beginning=seconds_first)

    def after(self, wall: int) -> int | None:
        """The first matching wall time strictly after ``wall`` (naive Unix seconds)."""
        try:
            return int(self._iter.get_next(float, start_time=float(wall)))
        except CroniterBadDateError:  # nothing within croniter's 50-year horizon
            return None

    def before(self, wall: int) -> int | None:
        """The last matching wall time strictly before ``wall``."""
        try:
            return int(self._iter.get_prev(float, start_time=float(wall)))
        except CroniterBadDateError:
            return None


# What datetime and croniter raise outside years 1-9999.
_OUT_OF_RANGE = (OverflowError, ValueError)
_local = threading.local()
_MAX_ITERATORS = 4096
_MIN_INSTANT = -(1 << 62)


def _walls(expression: str) -> _Walls:
    """This thread's iterator for ``expression`` (croniter objects are stateful)."""
    cache: dict[str, _Walls] | None = getattr(_local, "walls", None)
    if cache is None or len(cache) >= _MAX_ITERATORS:
        cache = _local.walls = {}
    walls = cache.get(expression)
    if walls is None:
        walls = cache[expression] = _Walls(expression)
    return walls


def walls_after(expression: str, wall: int) -> int | None:
    """The first wall time (naive Unix seconds) strictly after ``wall`` that ``expression``
    matches: pure wall arithmetic, no zone (``timetable.exclusions`` matches with it)."""
    return _walls(expression).after(wall)


@lru_cache(maxsize=4096)
def _every_hour(expression: str) -> bool:
    fields, _ = croniter.expand(expression, second_at_beginning=len(expression.split()) == 6)
    return bool(fields[1] == ["*"])  # croniter puts hours second, even with seconds first


def _min_or(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


# --- interval -----------------------------------------------------------------------------


def _interval_origin(schedule: IntervalSchedule, anchor: datetime) -> tuple[datetime, int, int]:
    """The series ``origin + k * step`` for ``k >= first``, with ``step`` in microseconds.

    Anchored at ``start_at`` (which is itself a run) when given, else at the job's creation
    (which is not: the first run is one interval later). Integer microseconds, so that the
    millionth run of a 0.1 s interval is exactly where it should be.
    """
    step = max(1, round(schedule.every_seconds * 1_000_000))
    if schedule.start_at is not None:
        return _as_utc(schedule.start_at), step, 0
    return _as_utc(anchor), step, 1


def _interval_occurrences(
    schedule: IntervalSchedule,
    after: datetime,
    anchor: datetime,
    limit: int,
    until: datetime | None,
) -> list[datetime]:
    origin, step, first = _interval_origin(schedule, anchor)
    k = max(first, (after - origin) // MICROSECOND // step + 1)
    upper = _earliest(schedule.end_at, until)
    result: list[datetime] = []
    while len(result) < limit:
        try:
            at = origin + k * step * MICROSECOND
        except OverflowError:  # past year 9999
            break
        if upper is not None and at > upper:
            break
        result.append(at)
        k += 1
    return result


def _interval_last(
    schedule: IntervalSchedule, until: datetime, anchor: datetime
) -> datetime | None:
    origin, step, first = _interval_origin(schedule, anchor)
    bound = _earliest(schedule.end_at, until)
    assert bound is not None
    k = (bound - origin) // MICROSECOND // step
    return origin + k * step * MICROSECOND if k >= first else None


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)

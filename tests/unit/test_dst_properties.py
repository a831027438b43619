"""The occurrence engine against a brute-force reference, around real DST transitions.

The reference shares nothing with the engine but zoneinfo's UTC -> local conversion, which is
the one direction that is never ambiguous: it walks every minute (every second for 6-field
expressions) of a UTC window, reads the local wall clock, and keeps the instants whose wall
time matches the expression according to its own field matcher. The DST policy is applied
from what the walk sees, not from zoneinfo's ``fold`` rules:

- a wall time read a second time (the clock fell back) is a *repeat*: kept under
  ``fold="both"``, dropped under ``fold="first"``;
- wall times the walk steps over (the clock jumped) are *missing*: under ``gap="shift"``
  each matching one runs at ``wall - offset before the jump``.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.v1.schedules import CronSchedule, DstPolicy
from timetable.occurrences import last_run, next_run, occurrences
from timetable.wallclock import SAMPLE_S, segment_at

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Sao_Paulo",  # DST abolished in 2019
    "Asia/Kolkata",  # +05:30, no DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "Europe/London",
    "America/Santiago",  # transitions at local midnight
    "Asia/Tehran",  # +03:30 / +04:30, DST abolished in 2022
]
Gap = Literal["shift", "skip"]
Fold = Literal["first", "both"] | None


# --- the reference ------------------------------------------------------------------------


def _field(spec: str, low: int, high: int) -> frozenset[int]:
    """A cron field as a set: ``*``, ``*/n``, ``a``, ``a-b``, ``a-b/n`` and lists of them."""
    values: set[int] = set()
    for part in spec.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first, last = (int(x) for x in span.split("-"))
        else:
            first = last = int(span)
        values.update(range(first, last + 1, int(step) if step else 1))
    return frozenset(values)


@dataclass(frozen=True)
class Matcher:
    """Minute-and-hour (and second) crons; the day fields of the families tested are ``*``."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    every_hour: bool

    @classmethod
    def parse(cls, expression: str) -> Matcher:
        fields = expression.split()
        second = fields.pop(0) if len(fields) == 6 else "0"
        assert fields[2:] == ["*", "*", "*"], "the reference matches minute/hour crons only"
        return cls(
            _field(second, 0, 59),
            _field(fields[0], 0, 59),
            _field(fields[1], 0, 23),
            every_hour=fields[1] == "*",
        )

    def __call__(self, wall: datetime) -> bool:
        return (
            wall.second in self.seconds and wall.minute in self.minutes and wall.hour in self.hours
        )


def reference(
    expression: str, zone_name: str, gap: Gap, fold: Fold, lo: datetime, hi: datetime
) -> list[datetime]:
    """Every run in ``(lo, hi]``, by walking the UTC timeline one step at a time."""
    zone = ZoneInfo(zone_name)
    match = Matcher.parse(expression)
    both = fold == "both" or (fold is None and match.every_hour)
    step = timedelta(seconds=1 if len(expression.split()) == 6 else 60)
    pad = timedelta(hours=2)  # more than any transition of these zones since 1990
    start = (lo - pad).replace(second=0, microsecond=0)
    runs: set[datetime] = set()
    seen: set[datetime] = set()
    previous: tuple[datetime, timedelta] | None = None
    instant = start
    while instant <= hi:
        local = instant.astimezone(zone)
        wall, offset = local.replace(tzinfo=None), local.utcoffset()
        assert offset is not None
        if wall in seen:  # the clock fell back: this wall time's second pass
            if both and match(wall) and instant > lo:
                runs.add(instant)
        else:
            if match(wall) and instant > lo:
                runs.add(instant)
            seen.add(wall)
        if previous is not None and gap == "shift":
            runs.update(_shifted(match, previous, wall, step, lo, hi))
        previous = (wall, offset)
        instant += step
    return sorted(runs)


def _shifted(
    match: Matcher,
    previous: tuple[datetime, timedelta],
    wall: datetime,
    step: timedelta,
    lo: datetime,
    hi: datetime,
) -> list[datetime]:
    """Wall times stepped over since ``previous``, moved past the jump."""
    before_wall, before_offset = previous
    missing = before_wall + step
    shifted = []
    while missing < wall:
        at = (missing - before_offset).replace(tzinfo=UTC)
        if match(missing) and lo < at <= hi:
            shifted.append(at)
        missing += step
    return shifted


@cache
def transitions(zone_name: str, year: int) -> tuple[datetime, ...]:
    """The instants in ``year`` where the zone's offset changes (hourly scan, then bisect)."""
    zone = ZoneInfo(zone_name)

    def offset(t: datetime) -> timedelta | None:
        return t.astimezone(zone).utcoffset()

    found = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    while t.year == year:
        nxt = t + timedelta(hours=1)
        if offset(t) != offset(nxt):
            lo, hi = t, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if offset(mid) == offset(lo) else (lo, mid)
            found.append(hi.replace(microsecond=0))
        t = nxt
    return tuple(found)


# --- hypothesis ---------------------------------------------------------------------------


def cron(expression: str, zone: str, gap: Gap, fold: Fold) -> CronSchedule:
    return CronSchedule(
        type="cron", expression=expression, timezone=zone, dst=DstPolicy(gap=gap, fold=fold)
    )


@st.composite
def around_transition(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and an instant at one of its transitions (mid-year if it had none that year)."""
    zone = draw(st.sampled_from(ZONES))
    year = draw(st.integers(1990, 2037))
    found = transitions(zone, year)
    if not found:
        return zone, datetime(year, 6, 15, tzinfo=UTC)
    return zone, draw(st.sampled_from(found))


def hourly() -> st.SearchStrategy[str]:
    return st.integers(0, 59).map(lambda m: f"{m} * * * *")


def every_n_minutes() -> st.SearchStrategy[str]:
    return st.sampled_from([1, 2, 5, 7, 10, 15, 20, 30, 45]).map(lambda n: f"*/{n} * * * *")


def minute_lists() -> st.SearchStrategy[str]:
    """Several minutes an hour: with a 30-minute jump, a shifted run can pass a real one."""
    minutes = st.sets(st.integers(0, 59), min_size=2, max_size=4)
    return minutes.map(lambda ms: ",".join(str(m) for m in sorted(ms)) + " * * * *")


def windows(span_h: float) -> st.SearchStrategy[tuple[timedelta, timedelta]]:
    """How far before and after the transition the compared window reaches."""
    seconds = st.integers(0, int(span_h * 3600))
    return st.tuples(seconds, seconds).map(
        lambda b_a: (timedelta(seconds=b_a[0]), timedelta(seconds=b_a[1]))
    )


gaps: st.SearchStrategy[Gap] = st.sampled_from(["shift", "skip"])
folds: st.SearchStrategy[Fold] = st.sampled_from([None, "first", "both"])


def check(expression: str, zone: str, gap: Gap, fold: Fold, lo: datetime, hi: datetime) -> None:
    schedule = cron(expression, zone, gap, fold)
    expected = reference(expression, zone, gap, fold, lo, hi)
    got = occurrences(schedule, after=lo, anchor=lo, limit=100_000, until=hi)
    assert got == expected, (expression, zone, gap, fold, lo, hi)


@settings(max_examples=250, deadline=None)
@given(
    around_transition(),
    st.one_of(hourly(), every_n_minutes(), minute_lists()),
    gaps,
    folds,
    windows(5),
)
def test_minute_crons_match_the_reference(
    where: tuple[str, datetime],
    expression: str,
    gap: Gap,
    fold: Fold,
    window: tuple[timedelta, timedelta],
) -> None:
    zone, at = where
    check(expression, zone, gap, fold, at - window[0], at + window[1])


@st.composite
def daily_near(draw: st.DrawFn) -> tuple[str, str, datetime]:
    """A daily cron whose hour(s) are at or next to the local hour of a transition."""
    zone, at = draw(around_transition())
    local_hour = (at - timedelta(seconds=1)).astimezone(ZoneInfo(zone)).hour
    hour = (local_hour + draw(st.sampled_from([-1, 0, 0, 1]))) % 24
    hours = str(hour) if draw(st.booleans()) else f"{hour},{(hour + 1) % 24}"
    minute = draw(st.sampled_from(["0", "15", "30", "45", "20,35", "0,30"]))
    return f"{minute} {hours} * * *", zone, at


@settings(max_examples=250, deadline=None)
@given(daily_near(), gaps, folds, windows(40))
def test_daily_crons_at_transition_hours_match_the_reference(
    case: tuple[str, str, datetime], gap: Gap, fold: Fold, window: tuple[timedelta, timedelta]
) -> None:
    expression, zone, at = case
    check(expression, zone, gap, fold, at - window[0], at + window[1])


def six_field() -> st.SearchStrategy[str]:
    every_n = st.sampled_from([1, 7, 15, 30]).map(lambda n: f"*/{n} * * * * *")
    at_minute = st.tuples(st.integers(0, 59), st.sampled_from(["*", "*/15", "0,30"])).map(
        lambda sm: f"{sm[0]} {sm[1]} * * * *"
    )
    return every_n | at_minute


@settings(max_examples=60, deadline=None)
@given(around_transition(), six_field(), gaps, folds, windows(0.4))
def test_second_crons_match_the_reference(
    where: tuple[str, datetime],
    expression: str,
    gap: Gap,
    fold: Fold,
    window: tuple[timedelta, timedelta],
) -> None:
    zone, at = where
    check(expression, zone, gap, fold, at - window[0], at + window[1])


@settings(max_examples=150, deadline=None)
@given(
    around_transition(),
    st.one_of(
        hourly(),
        every_n_minutes(),
        minute_lists(),
        st.sampled_from(["30 2 * * *", "0 0 * * *", "20,35 2 * * *", "0,30 1,2 * * *"]),
    ),
    gaps,
    folds,
    windows(30),
    st.integers(-5400, 5400),
)
def test_last_run_and_next_run_agree_with_the_reference(
    where: tuple[str, datetime],
    expression: str,
    gap: Gap,
    fold: Fold,
    window: tuple[timedelta, timedelta],
    until_s: int,
) -> None:
    """``last_run`` walks backwards, ``next_run`` restarts each time: same runs."""
    zone, at = where
    lo, hi = at - window[0], at + window[1]
    schedule = cron(expression, zone, gap, fold)
    expected = reference(expression, zone, gap, fold, lo, hi)
    until = min(max(at + timedelta(seconds=until_s, microseconds=250_000), lo), hi)
    before_until = [r for r in expected if r <= until]
    assert last_run(schedule, until, anchor=lo, after=lo) == (
        before_until[-1] if before_until else None
    )
    point = expected[len(before_until)] if len(before_until) < len(expected) else None
    following = next_run(schedule, after=until, anchor=lo)
    if point is not None:
        assert following == point
    else:
        assert following is None or following > hi


def half_hour_lists() -> st.SearchStrategy[str]:
    """Minutes ``0 < a < 30 <= b < a + 30``: the shifted ``a`` runs after the real ``b``."""
    pairs = st.integers(1, 29).flatmap(lambda a: st.tuples(st.just(a), st.integers(30, a + 29)))
    return pairs.map(lambda ab: f"{ab[0]},{ab[1]} * * * *")


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1990, 2037),
    half_hour_lists() | minute_lists(),
    st.integers(-600, 3600),
)
def test_last_run_over_a_half_hour_jump(year: int, expression: str, until_s: int) -> None:
    """Lord Howe jumps 02:00 -> 02:30: a shifted 02:20 (runs at 02:50) passes a real 02:35.

    The general test above rarely lands there; this one always does.
    """
    zone = "Australia/Lord_Howe"
    at = next(t for t in transitions(zone, year) if t.month > 6)  # the spring one
    lo, hi = at - timedelta(hours=3), at + timedelta(hours=3)
    schedule = cron(expression, zone, "shift", None)
    expected = reference(expression, zone, "shift", None, lo, hi)
    until = at + timedelta(seconds=until_s)
    before_until = [r for r in expected if r <= until]
    assert last_run(schedule, until, anchor=lo, after=lo) == (
        before_until[-1] if before_until else None
    )


# --- the engine's view of the zones -------------------------------------------------------


@pytest.mark.parametrize("year", [1991, 2011, 2026, 2037])
@pytest.mark.parametrize("zone", ZONES)
def test_segments_break_exactly_at_the_transitions(zone: str, year: int) -> None:
    """The engine's sampled segments against this file's own hourly scan."""
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    found, t = [], start
    while t < end:
        segment = segment_at(zone, t)
        assert segment.start <= t < segment.end
        if segment.before != segment.offset and segment.start >= start:
            found.append(datetime.fromtimestamp(segment.start, UTC))
        t = segment.end
    assert found == list(transitions(zone, year))


def test_no_zone_changes_its_offset_twice_within_a_sampling_step() -> None:
    """What makes sampling every ``SAMPLE_S`` exact, checked on the installed tz database.

    Reads zoneinfo's pure-Python transition table (a private attribute, test-only): it holds
    every explicit transition, which on a "fat" database covers the years up to 2037.
    """
    import zoneinfo._zoneinfo as pure  # CPython ships it beside the C implementation

    closest = timedelta.max
    for name in sorted(zoneinfo.available_timezones()):
        zone = pure.ZoneInfo.no_cache(name)
        if not hasattr(zone, "_trans_utc") or zone._tti_before is None:
            continue
        changes, offset = [], zone._tti_before.utcoff
        for t, ttinfo in zip(zone._trans_utc, zone._ttinfos, strict=True):
            if ttinfo.utcoff != offset and t >= -2208988800:  # since 1900
                changes.append(t)
            offset = ttinfo.utcoff
        for a, b in pairwise(changes):
            closest = min(closest, timedelta(seconds=b - a))
    assert closest > timedelta(seconds=2 * SAMPLE_S)

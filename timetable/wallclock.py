"""A zone's UTC offset as a piecewise-constant function of UTC time, with its breakpoints.

zoneinfo converts one instant at a time and does not list its transitions. The occurrence
engine needs more: for an instant, the whole stretch of UTC time around it over which the
zone's offset is constant (a :class:`Segment`) and the offset in force just before that
stretch. Those two offsets decide everything about daylight saving: when the offset grows at
a segment's start, the wall times in between never show on the clock (a *gap*); when it
shrinks, the wall times in between show twice (a *fold*).

Segments are found once per zone and per chunk of about a year, by sampling the offset every
few hours and bisecting to the second where it changes, then cached. Sampling is exact as long
as a zone never changes its offset twice within one sampling step: the closest pair of offset
changes in the tz database since 1900 is four days apart (Africa/Freetown, 1939), against a
six-hour step. Chunk seams are segment boundaries too, with equal offsets on both sides, so a
caller treats them like any other boundary and never needs to know about them.

All times here are integer seconds: UTC instants as Unix time, wall times as "naive" Unix
time (the wall clock read as if it were UTC), offsets as ``wall - utc``.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NAIVE_EPOCH = datetime(1970, 1, 1)
SECOND = timedelta(seconds=1)

# 2**25 s is about 388 days: a chunk holds at most a handful of transitions.
CHUNK_S = 1 << 25
SAMPLE_S = 6 * 3600
# Two days inside datetime's range, so that any zone's local time is still a datetime.
_FIRST_T = (datetime(1, 1, 3, tzinfo=UTC) - EPOCH) // SECOND
_LAST_T = (datetime(9999, 12, 29, tzinfo=UTC) - EPOCH) // SECOND


@dataclass(frozen=True, slots=True)
class Segment:
    """UTC instants ``[start, end)`` over which the zone's offset is ``offset``.

    ``before`` is the offset just before ``start``: bigger means the clocks fell back at
    ``start`` (a fold), smaller means they jumped forward (a gap), equal means a chunk seam.
    """

    start: int
    end: int
    offset: int
    before: int


@dataclass(frozen=True, slots=True)
class _Chunk:
    starts: tuple[int, ...]  # segment starts, the first being the chunk's own start
    offsets: tuple[int, ...]  # the offset from each start on
    before: int  # the offset in force just before the chunk
    end: int


def segment_at(zone: str, t: int) -> Segment:
    """The segment of ``zone`` that contains the UTC instant ``t``."""
    chunk = _chunk(zone, t // CHUNK_S)
    i = bisect_right(chunk.starts, t) - 1
    end = chunk.starts[i + 1] if i + 1 < len(chunk.starts) else chunk.end
    before = chunk.offsets[i - 1] if i else chunk.before
    return Segment(chunk.starts[i], end, chunk.offsets[i], before)


def offset_at(zone: ZoneInfo, t: int) -> int:
    """The zone's UTC offset, in seconds, at the UTC instant ``t``.

    Clamped to the years datetime can hold, so that a chunk straddling year 9999 still
    builds (the instants beyond are refused later, when they are turned into datetimes).
    """
    t = min(max(t, _FIRST_T), _LAST_T)
    offset = (EPOCH + t * SECOND).astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always knows its offset
    return offset.days * 86400 + offset.seconds


@lru_cache(maxsize=8192)
def _chunk(key: str, index: int) -> _Chunk:
    zone = ZoneInfo(key)
    start, end = index * CHUNK_S, (index + 1) * CHUNK_S
    starts, offsets = [start], [offset_at(zone, start)]
    lo, lo_offset = start, offsets[0]
    while lo < end - 1:
        hi = min(lo + SAMPLE_S, end - 1)
        hi_offset = offset_at(zone, hi)
        if hi_offset != lo_offset:
            starts.append(_change_in(zone, lo, hi, lo_offset))
            offsets.append(hi_offset)
        lo, lo_offset = hi, hi_offset
    return _Chunk(tuple(starts), tuple(offsets), offset_at(zone, start - 1), end)


def _change_in(zone: ZoneInfo, lo: int, hi: int, lo_offset: int) -> int:
    """The first second in ``(lo, hi]`` whose offset differs from ``lo_offset``."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if offset_at(zone, mid) == lo_offset:
            lo = mid
        else:
            hi = mid
    return hi


def to_seconds(value: datetime) -> int:
    """An aware datetime as Unix seconds, rounded down (exact: no float on the way)."""
    return (value - EPOCH) // SECOND


def ceil_seconds(value: datetime) -> int:
    """An aware datetime as Unix seconds, rounded up."""
    return -((EPOCH - value) // SECOND)


def from_seconds(t: int) -> datetime:
    """Unix seconds as an aware UTC datetime."""
    return EPOCH + t * SECOND


def wall_datetime(wall: int) -> datetime:
    """Naive Unix seconds as the naive wall-clock datetime they stand for."""
    return NAIVE_EPOCH + wall * SECOND


def format_offset(offset: timedelta) -> str:
    """``+01:00``, ``-03:30``, ``+05:45``; seconds only when the zone has them (old LMT)."""
    sign = "-" if offset < timedelta(0) else "+"
    total = abs(offset.days * 86400 + offset.seconds)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours:02d}:{minutes:02d}"
    return f"{text}:{seconds:02d}" if seconds else text

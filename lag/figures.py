"""The lag figures and the autoscaling hint: pure arithmetic on offsets, times and rates."""

from __future__ import annotations

import math
from collections.abc import Sequence

from lag.status import Sample


def offset_lag(committed: int | None, start: int, end: int) -> int:
    """High watermark minus committed offset, never negative.

    With no committed offset the lag counts from the log start (what the group would read
    with ``auto.offset.reset=earliest``, which kjs's consumers use), never as zero. A committed
    offset below the log start (records deleted by retention) counts from the committed
    offset, as Kafka's ``kafka-consumer-groups --describe`` does.
    """
    return max(0, end - (start if committed is None else committed))


def read_position(committed: int | None, start: int) -> int:
    """The offset of the next record the group will consume: the one its time lag is read on."""
    if committed is None or committed < start:
        return start
    return committed


def time_lag_s(now: float, lag: int, record_ts: float | None) -> float | None:
    """Now minus the timestamp of the record at the committed position; 0 when caught up.

    None when that record could not be read: the lag is then unknown, not guessed. Clamped at
    0, since a producer's clock may run ahead of ours.
    """
    if lag == 0:
        return 0.0
    if record_ts is None:
        return None
    return max(0.0, now - record_ts)


def consumed_per_s(samples: Sequence[Sample]) -> float | None:
    """Committed offsets per second, between the oldest and the newest readable sample of
    ``samples`` that have a committed offset. A rewind in between counts as 0 (it says nothing
    about how fast the group consumes). None with fewer than two such samples.
    """
    return _rate([(s.at, s.committed) for s in samples if s.readable and s.committed is not None])


def produced_per_s(samples: Sequence[Sample]) -> float | None:
    """High-watermark offsets per second between the oldest and newest readable sample."""
    return _rate([(s.at, s.end) for s in samples if s.readable])


def _rate(points: Sequence[tuple[float, int]]) -> float | None:
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    (t0, v0), (t1, v1) = points[0], points[-1]
    return max(0, v1 - v0) / (t1 - t0)


def workers_needed(
    lag: int,
    consumed: float | None,
    produced: float | None,
    members: int | None,
    partitions: int,
    target_s: float,
) -> int | None:
    """Consumers needed to drain ``lag`` within ``target_s`` while records keep arriving.

    ``consumed`` and ``produced`` are the group's rates in offsets per second. Each member
    consumes ``consumed / members``; draining needs a capacity of ``lag / target_s +
    produced``, so the hint is the ceiling of their quotient, at least 1 and capped at
    ``partitions`` (a member beyond one per partition has nothing to read). Special cases:

    - no members and a lag: 1 (someone must start before a rate can be measured);
    - nothing to drain and nothing arriving: 0;
    - no rates yet (fewer than two samples), or members that consumed nothing in the window
      while there is work: None, unknown (more members of a stuck group would not help; see
      its STALL or STOP status).

    The measured rate is what the members did consume, a lower bound of what they could: a
    caught-up group consumes only what arrives. The hint therefore says when to add workers
    and how many; while a group is caught up it is at most the current member count.
    """
    if target_s <= 0:
        raise ValueError("target_s must be positive")
    if partitions < 1:
        return None
    if lag > 0 and members == 0:
        return 1
    if produced is None:
        return None
    demand = lag / target_s + produced
    if demand == 0:
        return 0
    if members == 0:
        return 1
    if members is None or consumed is None or consumed <= 0:
        return None
    return min(partitions, max(1, math.ceil(demand / (consumed / members))))

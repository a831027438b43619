"""The status of a consumer group's partitions, from a sliding window of samples (Burrow-like).

Pure: samples in, verdicts out. No I/O and no clock; every sample carries the time it was read.

A partition's window holds its last ``Thresholds.window`` samples, oldest first. Its status is
the first of these rules that matches (``L`` is the latest sample, "readable" excludes samples
that could not be read, "lag" is the offset lag):

1. **ERR**: ``L`` could not be read (the error is the reason), or no sample in the window could.
2. **STOP**: ``L``'s lag > 0, the committed offset is the same in every readable sample, and
   the partition has had lag without progress for longer than ``stop_after_s``. Kafka's admin
   API does not say when an offset was committed, so that duration is bounded from below:
   a. the group has no active members (nobody can commit) and the record at the committed
      position has waited longer than ``stop_after_s`` (its time lag); or
   b. ``min(time the monitor has seen this committed offset unchanged, time lag)`` exceeds
      ``stop_after_s``: the offset was committed before the first of those observations, and
      the lag cannot be older than the record it waits on, so no progress was possible for at
      least that long. (A group that is catching up on an old backlog and pauses between
      commits therefore is not reported stopped on the age of the records alone.)
3. **REWIND**: the committed offset moved back between two readable samples of the window (or
   disappeared: the group's offsets were deleted or expired).
4. **STALL**: at least ``min_samples`` readable samples, lag > 0 in each of them, and the same
   committed offset in each: the group is not making progress, but not yet for
   ``stop_after_s``.
5. **WARN**: at least ``min_samples`` readable samples, lag > 0 in each of them, the lag never
   decreased from one sample to the next, and it is higher in ``L`` than in the oldest sample:
   the group commits, but falls behind.
6. **OK**: anything else, among which a caught-up partition (lag 0, whatever else), a lag that
   shrinks or holds steady while the group commits, and a window too short for rules 4 and 5.

Rule 1 of Burrow ("any zero lag in the window is OK") is kept for STALL and WARN through
"lag > 0 in each sample": a quiet topic, or a burst the group has already drained once in the
window, never raises them.

A group's status is that of its most severe partition, in the order of ``SEVERITY``; a group
with no partition at all (no members, no commits, no known topics) is ERR.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from itertools import pairwise


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    REWIND = "REWIND"
    STALL = "STALL"
    STOP = "STOP"
    ERR = "ERR"


# Least to most severe: a group shows the most severe status among its partitions.
SEVERITY: tuple[Status, ...] = (
    Status.OK,
    Status.WARN,
    Status.REWIND,
    Status.STALL,
    Status.STOP,
    Status.ERR,
)


@dataclass(frozen=True)
class Thresholds:
    """The numbers the rules use. The defaults are shown by ``kjs lag`` and the README.

    ``window``: samples kept per partition (Burrow's default, 10). ``min_samples``: readable
    samples STALL and WARN need (3: two intervals, so one slow commit is not a trend).
    ``stop_after_s``: how long a partition may have lag without progress before it is STOP
    (120 s: well above a worker's longest execution, the HTTP timeout, and faust's commit
    interval of about 3 s).
    """

    window: int = 10
    min_samples: int = 3
    stop_after_s: float = 120.0

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("window must hold at least one sample")
        if not 1 <= self.min_samples <= self.window:
            raise ValueError("min_samples must be between 1 and window")
        if self.stop_after_s <= 0:
            raise ValueError("stop_after_s must be positive")


@dataclass(frozen=True)
class Sample:
    """One reading of one partition of one group.

    ``committed`` is None when the group has no committed offset there; ``lag`` is then
    counted from the log start. ``time_lag_s`` is 0 when caught up and None when the record
    it is measured on could not be read. ``members`` is None when the group could not be
    described.
    """

    at: float
    committed: int | None = None
    end: int = 0
    lag: int = 0
    time_lag_s: float | None = 0.0
    members: int | None = None
    error: str | None = None

    @classmethod
    def failed(cls, at: float, error: str) -> Sample:
        return cls(at=at, error=error)

    @property
    def readable(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Window:
    """A partition's recent samples, and since when its committed offset has not changed.

    ``unchanged_since`` outlives the samples that fall out of the window, so that a STOP can
    be seen after ``stop_after_s`` even when the window spans less time than that.
    """

    samples: tuple[Sample, ...] = ()
    unchanged_since: float | None = None

    @property
    def readable(self) -> tuple[Sample, ...]:
        return tuple(s for s in self.samples if s.readable)


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str


def advance(window: Window, sample: Sample, thresholds: Thresholds) -> Window:
    """The window after ``sample`` (an unreadable sample says nothing about commits)."""
    samples = (*window.samples, sample)[-thresholds.window :]
    if not sample.readable:
        return replace(window, samples=samples)
    previous = window.readable[-1] if window.readable else None
    if previous is None or previous.committed != sample.committed:
        return Window(samples, unchanged_since=sample.at)
    return Window(samples, unchanged_since=window.unchanged_since)


def partition_status(window: Window, thresholds: Thresholds) -> Verdict:
    """Rules 1 to 6 of the module docstring, in that order."""
    if not window.samples:
        return Verdict(Status.ERR, "not read yet")
    latest = window.samples[-1]
    if latest.error is not None:
        return Verdict(Status.ERR, f"cannot read: {latest.error}")
    readable = window.readable
    for rule in (_stop, _rewind, _stall, _warn):
        verdict = rule(readable, window, thresholds)
        if verdict is not None:
            return verdict
    return _ok(readable, thresholds)


def group_status(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe partition status, with how many partitions have it."""
    verdicts = list(verdicts)
    if not verdicts:
        return Verdict(Status.ERR, "no partitions: no members, no committed offsets, no topics")
    worst = max(verdicts, key=lambda v: SEVERITY.index(v.status))
    count = sum(1 for v in verdicts if v.status is worst.status)
    if worst.status is Status.OK:
        return Verdict(Status.OK, f"all {len(verdicts)} partitions OK")
    first = next(v for v in verdicts if v.status is worst.status)
    return Verdict(
        worst.status, f"{worst.status} on {count} of {len(verdicts)} partitions ({first.reason})"
    )


def _same_committed(readable: Sequence[Sample]) -> bool:
    return len({s.committed for s in readable}) == 1


def _position(sample: Sample) -> str:
    return "no committed offset" if sample.committed is None else f"offset {sample.committed}"


def _stop(readable: Sequence[Sample], window: Window, th: Thresholds) -> Verdict | None:
    latest = readable[-1]
    if latest.lag == 0 or not _same_committed(readable):
        return None
    waited = latest.time_lag_s
    if latest.members == 0 and waited is not None and waited > th.stop_after_s:
        return Verdict(
            Status.STOP,
            f"no members; {_position(latest)}, lag {latest.lag}, oldest record waiting "
            f"{waited:.0f}s > {th.stop_after_s:g}s",
        )
    since = window.unchanged_since
    if since is None:
        return None
    observed = latest.at - since
    stuck = observed if waited is None else min(observed, waited)
    if stuck > th.stop_after_s:
        return Verdict(
            Status.STOP,
            f"{_position(latest)} unchanged for {stuck:.0f}s > {th.stop_after_s:g}s "
            f"with lag {latest.lag}",
        )
    return None


def _rewind(readable: Sequence[Sample], window: Window, th: Thresholds) -> Verdict | None:
    for before, after in pairwise(readable):
        if before.committed is None:
            continue
        if after.committed is None:
            return Verdict(Status.REWIND, f"committed offset {before.committed} was deleted")
        if after.committed < before.committed:
            return Verdict(
                Status.REWIND,
                f"committed offset moved back from {before.committed} to {after.committed}",
            )
    return None


def _stall(readable: Sequence[Sample], window: Window, th: Thresholds) -> Verdict | None:
    if len(readable) < th.min_samples or any(s.lag == 0 for s in readable):
        return None
    if not _same_committed(readable):
        return None
    span = readable[-1].at - readable[0].at
    who = " (no members)" if readable[-1].members == 0 else ""
    return Verdict(
        Status.STALL,
        f"{_position(readable[-1])} unchanged over {len(readable)} samples ({span:.1f}s) "
        f"with lag {readable[-1].lag}{who}",
    )


def _warn(readable: Sequence[Sample], window: Window, th: Thresholds) -> Verdict | None:
    if len(readable) < th.min_samples or any(s.lag == 0 for s in readable):
        return None
    lags = [s.lag for s in readable]
    if any(b < a for a, b in pairwise(lags)) or lags[-1] <= lags[0]:
        return None
    span = readable[-1].at - readable[0].at
    return Verdict(
        Status.WARN, f"lag grew from {lags[0]} to {lags[-1]} over {len(lags)} samples ({span:.1f}s)"
    )


def _ok(readable: Sequence[Sample], th: Thresholds) -> Verdict:
    latest = readable[-1]
    if latest.lag == 0:
        return Verdict(Status.OK, "caught up")
    if len(readable) < th.min_samples:
        return Verdict(
            Status.OK,
            f"lag {latest.lag}; {len(readable)} of {th.min_samples} samples needed for STALL/WARN",
        )
    return Verdict(Status.OK, f"consuming; lag {readable[0].lag} -> {latest.lag}")

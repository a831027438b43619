"""The lag monitor: samples every group, keeps each partition's window, reports the figures.

``LagMonitor.sample`` reads once (``lag.read``) and folds the reading into the
windows; ``update_windows`` and ``build_report`` are the pure halves of that, so the report's
assembly is tested without a broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lag.figures import consumed_per_s, produced_per_s, time_lag_s, workers_needed
from lag.read import GroupRead, LagRead, PartitionRead
from lag.status import (
    Sample,
    Status,
    Thresholds,
    Verdict,
    Window,
    advance,
    group_status,
    partition_status,
)

# How fast the autoscaling hint wants a group's lag drained (``kjs lag --drain-target``).
DRAIN_TARGET_S = 60.0

Key = tuple[str, str, int]  # group, topic, partition


class Reader(Protocol):
    async def read(self, groups: Mapping[str, Sequence[str]]) -> LagRead: ...


@dataclass(frozen=True)
class PartitionReport:
    group: str
    topic: str
    partition: int
    committed: int | None
    start: int | None
    end: int | None
    lag: int | None
    time_lag_s: float | None
    status: Status
    reason: str


@dataclass(frozen=True)
class GroupReport:
    group: str
    state: str
    members: int | None
    status: Status
    reason: str
    lag: int
    time_lag_s: float | None
    consumed_per_s: float | None
    produced_per_s: float | None
    workers_needed: int | None
    partitions: tuple[PartitionReport, ...]


@dataclass(frozen=True)
class LagReport:
    at: float
    thresholds: Thresholds
    drain_target_s: float
    groups: tuple[GroupReport, ...]
    topic_partitions: Mapping[str, int] = field(default_factory=dict)
    samples: int = 0  # samples taken so far by the monitor that made this report


class LagMonitor:
    def __init__(
        self,
        reader: Reader,
        groups: Mapping[str, Sequence[str]],
        thresholds: Thresholds | None = None,
        drain_target_s: float = DRAIN_TARGET_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reader = reader
        self.groups = dict(groups)
        self.thresholds = thresholds or Thresholds()
        self.drain_target_s = drain_target_s
        self._clock = clock
        self._windows: dict[Key, Window] = {}
        self._samples = 0

    async def sample(self) -> LagReport:
        """Read every group once, fold it into the windows and report."""
        try:
            read = await self.reader.read(self.groups)
        except Exception as exc:  # the broker is down, say: every partition is ERR
            read = failed_read(self.groups, self._clock(), f"{type(exc).__name__}: {exc}")
        self._windows = update_windows(self._windows, read, self.thresholds)
        self._samples += 1
        report = build_report(read, self._windows, self.thresholds, self.drain_target_s)
        return LagReport(
            report.at,
            report.thresholds,
            report.drain_target_s,
            report.groups,
            report.topic_partitions,
            self._samples,
        )


def failed_read(groups: Mapping[str, Sequence[str]], at: float, error: str) -> LagRead:
    return LagRead(at, tuple(GroupRead(g, errors=(error,)) for g in groups))


def update_windows(
    windows: Mapping[Key, Window], read: LagRead, thresholds: Thresholds
) -> dict[Key, Window]:
    """Each partition's window after ``read``. A group that could not be read at all gets an
    unreadable sample on every partition it had; a partition no longer read is dropped."""
    out: dict[Key, Window] = {}
    for g in read.groups:
        if not g.partitions and g.errors:
            for key, window in windows.items():
                if key[0] == g.group:
                    out[key] = advance(window, Sample.failed(read.at, g.errors[0]), thresholds)
            continue
        for p in g.partitions:
            key = (g.group, p.topic, p.partition)
            if p.error is not None:
                sample = Sample.failed(read.at, p.error)
            else:
                sample = Sample(
                    at=read.at,
                    committed=p.committed,
                    end=p.end,
                    lag=p.lag,
                    time_lag_s=time_lag_s(read.at, p.lag, p.record_ts),
                    members=g.members,
                )
            out[key] = advance(windows.get(key, Window()), sample, thresholds)
    return out


def build_report(
    read: LagRead, windows: Mapping[Key, Window], thresholds: Thresholds, drain_target_s: float
) -> LagReport:
    groups = tuple(_group_report(g, read, windows, thresholds, drain_target_s) for g in read.groups)
    return LagReport(read.at, thresholds, drain_target_s, groups, dict(read.topic_partitions))


def _group_report(
    g: GroupRead,
    read: LagRead,
    windows: Mapping[Key, Window],
    thresholds: Thresholds,
    drain_target_s: float,
) -> GroupReport:
    mine = sorted((k, w) for k, w in windows.items() if k[0] == g.group)
    reads = {(p.topic, p.partition): p for p in g.partitions}
    rows = tuple(_partition_report(k, w, reads.get(k[1:]), thresholds) for k, w in mine)
    verdict = _group_verdict(g, rows)
    readable = [r for r in rows if r.lag is not None]
    lag = sum(r.lag or 0 for r in readable)
    time_lags = [r.time_lag_s for r in readable if r.time_lag_s is not None]
    consumed = _sum([consumed_per_s(w.samples) for _, w in mine])
    produced = _sum([produced_per_s(w.samples) for _, w in mine])
    topics = {k[1] for k, _ in mine}
    partitions = max((read.topic_partitions.get(t, 0) for t in topics), default=0)
    return GroupReport(
        group=g.group,
        state=g.state,
        members=g.members,
        status=verdict.status,
        reason=verdict.reason,
        lag=lag,
        time_lag_s=max(time_lags) if time_lags else None,
        consumed_per_s=consumed,
        produced_per_s=produced,
        workers_needed=workers_needed(
            lag, consumed, produced, g.members, partitions, drain_target_s
        ),
        partitions=rows,
    )


def _partition_report(
    key: Key, window: Window, read: PartitionRead | None, thresholds: Thresholds
) -> PartitionReport:
    verdict = partition_status(window, thresholds)
    latest = window.samples[-1]
    if read is None or read.error is not None or not latest.readable:
        return PartitionReport(*key, None, None, None, None, None, verdict.status, verdict.reason)
    return PartitionReport(
        *key,
        committed=read.committed,
        start=read.start,
        end=read.end,
        lag=read.lag,
        time_lag_s=latest.time_lag_s,
        status=verdict.status,
        reason=verdict.reason,
    )


def _group_verdict(g: GroupRead, rows: Sequence[PartitionReport]) -> Verdict:
    if g.errors:
        return Verdict(Status.ERR, "cannot read: " + "; ".join(g.errors))
    if not rows and g.state == "DEAD":
        return Verdict(Status.ERR, "no such group: no members, no committed offsets")
    return group_status(Verdict(r.status, r.reason) for r in rows)


def _sum(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None

"""The pipeline page's data: the API process samples consumer lag itself, with ``lag``'s monitor.

The same monitor as ``kjs lag`` and the exporter (``lag.command.monitor_for``: the same
groups, reader, status rules and autoscaling hint), sampled every
``KJS_CONSOLE_LAG_INTERVAL_S`` in the background from start-up, so the page answers at once
and its charts cover the last hour (held in memory: about 360 points per group at the default
interval). Each API instance keeps its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from lag.monitor import LagMonitor, LagReport

log = logging.getLogger(__name__)

HOUR_S = 3600.0


@dataclass(frozen=True)
class Point:
    at: float
    lag: int
    time_lag_s: float | None


class LagHistory:
    def __init__(
        self,
        monitor: LagMonitor,
        interval_s: float,
        keep_s: float = HOUR_S,
    ) -> None:
        self.monitor = monitor
        self.interval_s = interval_s
        self.keep_s = keep_s
        self.latest: LagReport | None = None
        self._points: dict[str, deque[Point]] = {}

    def record(self, report: LagReport) -> None:
        """Keep ``report`` as the latest, and each group's figures as a point of its chart."""
        self.latest = report
        oldest = report.at - self.keep_s
        for g in report.groups:
            points = self._points.setdefault(g.group, deque())
            points.append(Point(report.at, g.lag, g.time_lag_s))
            while points and points[0].at < oldest:
                points.popleft()

    def first_at(self) -> float | None:
        """When the oldest point kept was sampled."""
        return min((points[0].at for points in self._points.values() if points), default=None)

    def points(self, group: str) -> list[Point]:
        return list(self._points.get(group, ()))

    async def sample(self) -> LagReport:
        report = await self.monitor.sample()
        self.record(report)
        return report

    async def run(self) -> None:
        """Sample every ``interval_s`` until cancelled; a failed sample is logged, not fatal
        (the monitor itself reports an unreachable broker as ERR)."""
        while True:
            started = time.monotonic()
            try:
                await self.sample()
            except Exception:
                log.exception("console: lag sample failed")
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Sample in the background while the context is open."""
        task = asyncio.ensure_future(self.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

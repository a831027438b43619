"""The lag exporter (``kjs lag --serve``): the monitor's figures as Prometheus gauges.

The monitor samples in the background every ``interval_s``; a scrape renders the latest
report, so scrapes are cheap and never wait on Kafka. ``/metrics`` serves the gauges of
``lag.metrics.EXPORTER_METRICS`` (and the process' own CPU and memory), ``/healthz``
answers 200 once the first sample is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lag import metrics as m
from lag.monitor import LagMonitor, LagReport
from lag.status import SEVERITY

log = logging.getLogger(__name__)

DEFAULT_PORT = 9468
DEFAULT_INTERVAL_S = 10.0


def _gauge(metric: m.MetricName) -> GaugeMetricFamily:
    return GaugeMetricFamily(metric.name, metric.help, labels=list(metric.labels))


def families(report: LagReport | None, samples: int = 0) -> list[Metric]:
    """The exporter's metric families for ``report`` (no series but the counter before it)."""
    lag, seconds = _gauge(m.LAG_MESSAGES), _gauge(m.LAG_SECONDS)
    committed, end = _gauge(m.COMMITTED_OFFSET), _gauge(m.END_OFFSET)
    status, members = _gauge(m.GROUP_STATUS), _gauge(m.GROUP_MEMBERS)
    needed, partitions = _gauge(m.WORKERS_NEEDED), _gauge(m.TOPIC_PARTITIONS)
    last = _gauge(m.LAST_SAMPLE)
    total = CounterMetricFamily(m.SAMPLES.name.removesuffix("_total"), m.SAMPLES.help)
    total.add_metric([], samples)
    out: list[Metric] = [lag, seconds, committed, end, status, members, needed, partitions, last]
    if report is None:
        return [*out, total]
    last.add_metric([], report.at)
    ends: dict[tuple[str, str], int] = {}
    for g in report.groups:
        for s in SEVERITY:
            status.add_metric([g.group, str(s)], 1.0 if s is g.status else 0.0)
        if g.members is not None:
            members.add_metric([g.group], g.members)
        if g.workers_needed is not None:
            needed.add_metric([g.group], g.workers_needed)
        for p in g.partitions:
            labels = [g.group, p.topic, str(p.partition)]
            if p.lag is not None:
                lag.add_metric(labels, p.lag)
            if p.time_lag_s is not None:
                seconds.add_metric(labels, p.time_lag_s)
            if p.committed is not None:
                committed.add_metric(labels, p.committed)
            if p.end is not None:
                ends[(p.topic, str(p.partition))] = p.end
    for (topic, partition), offset in sorted(ends.items()):
        end.add_metric([topic, partition], offset)
    for topic, count in sorted(report.topic_partitions.items()):
        partitions.add_metric([topic], count)
    return [*out, total]


class LagCollector(Collector):
    """Renders the latest report at each scrape."""

    def __init__(self) -> None:
        self.report: LagReport | None = None
        self.samples = 0

    def collect(self) -> Iterable[Metric]:
        return families(self.report, self.samples)

    def describe(self) -> Iterable[Metric]:
        return families(None)


class LagExporter:
    """Samples ``monitor`` every ``interval_s`` and serves the latest figures over HTTP."""

    def __init__(
        self,
        monitor: LagMonitor,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.monitor = monitor
        self.host, self.port, self.interval_s = host, port, interval_s
        self.collector = LagCollector()
        self.registry = CollectorRegistry()
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def start(self) -> int:
        """Listen, and return the bound port (useful with port 0)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        bound = self._runner.addresses[0][1]
        log.info("lag exporter on http://%s:%s/metrics", self.host, bound)
        return int(bound)

    async def sample_once(self) -> LagReport:
        report = await self.monitor.sample()
        self.collector.report = report
        self.collector.samples += 1
        return report

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until ``stop`` is set, then stop listening."""
        try:
            while not stop.is_set():
                started = time.monotonic()
                await self.sample_once()
                wait = max(0.0, self.interval_s - (time.monotonic() - started))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.collector.report is None:
            return web.json_response({"status": "starting"}, status=503)
        return web.json_response({"status": "ok", "samples": self.collector.samples})

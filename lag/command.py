"""``kjs lag``: a table (or JSON) of every group's lag, once, refreshed, or as an exporter."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from core.settings import KafkaSettings
from lag.exporter import DEFAULT_INTERVAL_S, LagExporter
from lag.groups import monitored_groups
from lag.monitor import DRAIN_TARGET_S, LagMonitor, LagReport
from lag.read import LagReader
from lag.render import as_json, table
from lag.status import Thresholds

# A one-shot run takes this many samples this far apart, so that STALL and WARN, which need
# Thresholds.min_samples samples, can show without --watch. 1.5 s apart spans 3 s: more than
# faust's commit interval (about 3 s), so a busy scheduler is not mistaken for a stalled one.
ONE_SHOT_SAMPLES = 3
ONE_SHOT_INTERVAL_S = 1.5
WATCH_INTERVAL_S = 5.0

CLEAR = "\x1b[H\x1b[2J"


@dataclass(frozen=True)
class LagOptions:
    groups: Sequence[str] = ()
    include_kjs: bool = True
    json: bool = False
    watch_s: float | None = None
    serve: bool = False
    host: str = "127.0.0.1"
    port: int = 9468
    samples: int = ONE_SHOT_SAMPLES
    interval_s: float | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    drain_target_s: float = DRAIN_TARGET_S


def monitor_for(kafka: KafkaSettings, options: LagOptions) -> LagMonitor:
    groups = monitored_groups(kafka, options.groups, options.include_kjs)
    reader = LagReader(kafka)
    return LagMonitor(reader, groups, options.thresholds, options.drain_target_s)


async def run(kafka: KafkaSettings, options: LagOptions, out: TextIO = sys.stdout) -> int:
    # The record reader assigns a fresh consumer on every sample; aiokafka logs each one.
    logging.getLogger("aiokafka.consumer.subscription_state").setLevel(logging.WARNING)
    monitor = monitor_for(kafka, options)
    if options.serve:
        interval = options.interval_s or DEFAULT_INTERVAL_S
        exporter = LagExporter(monitor, options.host, options.port, interval)
        await exporter.start()
        await exporter.run(_stop_on_signals())
        return 0
    if options.watch_s is not None:
        await _watch(monitor, options, options.watch_s, out)
        return 0
    interval = ONE_SHOT_INTERVAL_S if options.interval_s is None else options.interval_s
    report = await monitor.sample()
    for _ in range(options.samples - 1):
        await asyncio.sleep(interval)
        report = await monitor.sample()
    _print(report, options, interval, out)
    return 0


async def _watch(monitor: LagMonitor, options: LagOptions, every_s: float, out: TextIO) -> None:
    stop = _stop_on_signals()
    while not stop.is_set():
        report = await monitor.sample()
        if not options.json and out.isatty():
            out.write(CLEAR)
        _print(report, options, every_s, out)
        if not options.json:
            out.write("\n")
        out.flush()
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass


def _print(report: LagReport, options: LagOptions, interval_s: float, out: TextIO) -> None:
    if options.json:
        # One document per line, so that --watch --json is a stream of JSON lines.
        out.write(json.dumps(as_json(report)) + "\n")
    else:
        out.write(table(report, interval_s) + "\n")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop

"""``kjs scheduler``: run one scheduler instance until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio

import faust
import uvloop

from core import tracing
from core.gc_tuning import tune_collector
from core.logs import logging_config
from core.ops_server import publish_build_info
from core.settings import (
    DatabaseSettings,
    EventsSettings,
    KafkaSettings,
    ObservabilitySettings,
    SchedulerSettings,
    load,
)
from scheduler.app import SchedulerApp


def run(loglevel: str | None = None, metrics_port: int | None = None) -> None:
    obs = load(ObservabilitySettings)
    tracing.configure("kjs-scheduler")
    if metrics_port is not None:
        obs = obs.model_copy(update={"metrics_port": metrics_port})
    scheduler = SchedulerApp(
        load(KafkaSettings),
        load(DatabaseSettings),
        load(SchedulerSettings),
        observability=obs,
        events=load(EventsSettings),
    )
    publish_build_info("scheduler")
    # Before faust's worker makes its loop (mode asks the policy for one): uvloop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    level = loglevel or obs.log_level
    # faust installs its own logging unless handed a config: hand it ours.
    worker = faust.Worker(
        scheduler.app, loglevel=level, quiet=True, logging_config=logging_config(obs, level)
    )
    # faust's terminal spinner sets the root logger to DEBUG to spin on every record, which
    # makes aiokafka build a debug record per fetch and per produce (2% of the scheduler's
    # CPU under load) and prints cursor escapes into the logs.
    worker.spinner = None
    tune_collector()
    worker.execute_from_commandline()

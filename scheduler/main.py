"""``kjs scheduler``: run one scheduler instance until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging

import faust

from kjs.settings import DatabaseSettings, KafkaSettings, SchedulerSettings, load
from scheduler.app import SchedulerApp


def build() -> SchedulerApp:
    return SchedulerApp(load(KafkaSettings), load(DatabaseSettings), load(SchedulerSettings))


def run(loglevel: str = "info") -> None:
    scheduler = build()
    worker = faust.Worker(scheduler.app, loglevel=loglevel, quiet=True)
    logging.getLogger("scheduler").setLevel(loglevel.upper())
    worker.execute_from_commandline()

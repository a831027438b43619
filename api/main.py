"""``kjs api``: serve the gateway until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import timedelta

from aiohttp import web
from prometheus_client import REGISTRY

from api.app import build_app
from api.deps import ApiDeps
from api.publisher import CommandPublisher
from core import tracing
from core.db import create_pool
from core.settings import (
    ApiSettings,
    DatabaseSettings,
    KafkaSettings,
    SchedulerSettings,
    SecuritySettings,
    TargetSettings,
    load,
)
from topics.catalog import catalog

log = logging.getLogger(__name__)

# In-flight requests get this long past the Kafka timeout to finish on shutdown.
_SHUTDOWN_SLACK_S = 5.0

# Called with the built app before it serves: how the command line mounts sub-applications
# (the web console) without the API knowing of them.
AppExtension = Callable[[web.Application], None]


async def run(extend: AppExtension | None = None) -> None:
    """Serve until a stop signal, then unwind in reverse: listener, producer, pool.

    The pool opens no connection up front (``min_size=0``), so the API starts, and goes on
    accepting submissions, while Postgres is down: a submit only needs Kafka.
    """
    kafka, database = load(KafkaSettings), load(DatabaseSettings)
    api, scheduler = load(ApiSettings), load(SchedulerSettings)
    security = load(SecuritySettings)
    tracing.configure("kjs-api")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with AsyncExitStack() as stack:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            stack.callback(loop.remove_signal_handler, sig)

        pool = await create_pool(database.model_copy(update={"db_pool_min": 0}), custom_plans=True)
        stack.push_async_callback(pool.close)
        publisher = CommandPublisher(kafka, api.kafka_timeout_s)
        stack.push_async_callback(publisher.close)

        deps = ApiDeps(
            pool=pool,
            publisher=publisher,
            catalog=catalog(kafka),
            past_grace=timedelta(seconds=scheduler.past_grace_s),
            registry=REGISTRY,
            targets=load(TargetSettings),
            security=security,
        )
        app = build_app(deps)
        if extend is not None:
            extend(app)
        runner = web.AppRunner(app)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(
            runner,
            api.api_host,
            api.api_port,
            shutdown_timeout=api.kafka_timeout_s + _SHUTDOWN_SLACK_S,
        )
        await site.start()
        log.info("kjs api listening on %s", ", ".join(map(str, runner.addresses)))
        # After listening, so /healthz answers while a down broker makes this wait.
        await publisher.warm_up()
        await stop.wait()
        log.info("kjs api stopping")

"""``/metrics``, ``/healthz`` and ``/readyz`` for the processes that have no HTTP API of their
own (scheduler, workers). Off unless a port is given, so that several processes start side by
side on one host with no extra flags; port 0 picks a free one (logged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Info,
    generate_latest,
)

from core import __version__

log = logging.getLogger(__name__)

# Readiness: each check names a dependency and answers "ok" or why it is not.
ReadyCheck = Callable[[], Awaitable[dict[str, str]]]


def publish_build_info(process: str, registry: CollectorRegistry = REGISTRY) -> None:
    """``kjs_build_info{version, process}``: once per process, at its entry point."""
    Info("kjs_build", "The running kjs build.", registry=registry).info(
        {"version": __version__, "process": process}
    )


def ops_app(ready: ReadyCheck, registry: CollectorRegistry = REGISTRY) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await ready()
        ok = all(v == "ok" for v in checks.values())
        return web.Response(
            text=json.dumps({"ready": ok, **checks}),
            status=200 if ok else 503,
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_ops_server(host: str, port: int, ready: ReadyCheck) -> web.AppRunner:
    runner = web.AppRunner(ops_app(ready), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    log.info("metrics and health on http://%s:%s (/metrics, /healthz, /readyz)", host, bound)
    return runner

"""``kjs dev``: the whole system on one machine, in one command, until Ctrl-C."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from infra import supervisor
from kjs.children import run_until_stopped, start_children
from kjs.settings import (
    LANES,
    ApiSettings,
    DatabaseSettings,
    InfraSettings,
    KafkaSettings,
    SecuritySettings,
    load,
)
from schemas.db import migrate_url
from topics.admin import create_topics
from topics.catalog import catalog

log = logging.getLogger("kjs.dev")


# The ports infra/monitoring/prometheus.yml scrapes.
SCHEDULER_METRICS_PORT = 9464
WORKER_METRICS_PORTS = dict(zip(LANES, (9465, 9466, 9467), strict=True))
LAG_EXPORTER_PORT = 9468


def _processes() -> list[tuple[str, list[str]]]:
    kjs = [sys.executable, "-m", "kjs.cli"]
    return [
        ("scheduler", [*kjs, "scheduler", "--metrics-port", str(SCHEDULER_METRICS_PORT)]),
        *(
            (
                f"worker-{lane}",
                [*kjs, "worker", "--lane", lane, "--metrics-port", str(port)],
            )
            for lane, port in WORKER_METRICS_PORTS.items()
        ),
        ("api", [*kjs, "api"]),
        ("lag-exporter", [*kjs, "lag", "--serve", "--port", str(LAG_EXPORTER_PORT)]),
    ]


DEV_TENANT = "dev"


async def dev_key(dsn: str) -> str:
    """A fresh key for the local tenant, made the way `kjs keys create` makes one."""
    import asyncpg

    from api.keys import create_key

    conn = await asyncpg.connect(dsn)
    try:
        _, key = await create_key(conn, DEV_TENANT, ["read", "write"], name="kjs dev")
    finally:
        await conn.close()
    return key


async def run_dev(infra: InfraSettings) -> int:
    """Bring the stack up, run it until a signal, and take down what it started.

    1. Note which services already run, then start the missing ones and wait until
       they answer.
    2. Apply migrations and create topics (both idempotent).
    3. Start the scheduler, one worker per lane and the API as child processes.
    4. On Ctrl-C or SIGTERM (or a child's death), SIGTERM every child, wait for them
       (SIGKILL after a grace), then stop the services this command started.
    """
    t0 = time.monotonic()
    before = await supervisor.status(infra)
    already = all(line.startswith("running") for line in before.values())
    await supervisor.up(infra)
    kafka, db = load(KafkaSettings), load(DatabaseSettings)
    await migrate_url(db.database_url.get_secret_value())
    security = load(SecuritySettings)
    if security.auth_disabled:
        log.warning("AUTHENTICATION IS DISABLED (KJS_AUTH_DISABLED=true): no API key needed")
        key = None
    else:
        key = await dev_key(db.database_url.get_secret_value())
    await create_topics(kafka, catalog(kafka))
    _allow_local_targets()
    children = await start_children(dict(_processes()))
    api = load(ApiSettings)
    log.info(
        "kjs is up in %.1fs: API on http://%s:%d, Ctrl-C to stop",
        time.monotonic() - t0,
        api.api_host,
        api.api_port,
    )
    if key is not None:
        # On stdout, so that it can be copied (or captured) as is.
        print(f"kjs dev API key for tenant {DEV_TENANT!r} (read, write):", flush=True)
        print(f"  export KJS_API_KEY={key}", flush=True)
        print(
            f'  curl -H "Authorization: Bearer $KJS_API_KEY" '
            f"http://{api.api_host}:{api.api_port}/v1/jobs?user_id={DEV_TENANT}",
            flush=True,
        )
    code = await run_until_stopped(children)
    if not already:
        await supervisor.down(infra)
    return code


def _allow_local_targets() -> None:
    """On a developer's machine the targets are local servers: let the children's HTTP
    target guard through loopback, unless the operator set the allowlist (production
    keeps the default, empty: loopback refused)."""
    if "KJS_HTTP_ALLOWLIST" not in os.environ:
        os.environ["KJS_HTTP_ALLOWLIST"] = json.dumps(["127.0.0.1", "::1"])
        log.warning("kjs dev: HTTP targets on loopback are allowed (KJS_HTTP_ALLOWLIST)")

"""``kjs dev``: the whole system on one machine, in one command, until Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

from core.db import migrate_url
from core.settings import (
    ApiSettings,
    DatabaseSettings,
    InfraSettings,
    KafkaSettings,
    SecuritySettings,
    load,
)
from infra import supervisor
from kjs.children import run_until_stopped, start_children
from schemas.v1.statuses import LANES
from topics.admin import create_topics
from topics.catalog import catalog

log = logging.getLogger("kjs.dev")

# How long the children get to become ready before `kjs dev` says which are not.
READY_TIMEOUT_S = 120.0


# The ports infra/monitoring/prometheus.yml scrapes.
SCHEDULER_METRICS_PORT = 9464
WORKER_METRICS_PORTS = dict(zip(LANES, (9465, 9466, 9467), strict=True))
LAG_EXPORTER_PORT = 9468


def _processes(loglevel: str) -> list[tuple[str, list[str]]]:
    kjs = [sys.executable, "-m", "kjs.cli", "--loglevel", loglevel]
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


def api_base(api: ApiSettings) -> str:
    """Where this machine reaches the API: a wildcard listen address is not one to dial."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(api.api_host, api.api_host)
    return f"http://[{host}]:{api.api_port}" if ":" in host else f"http://{host}:{api.api_port}"


def readiness_urls(api: ApiSettings) -> dict[str, str]:
    """Each child's readiness: the scheduler's shards assigned, each worker's lane consuming,
    the API reaching Kafka and Postgres, the lag exporter serving."""
    local = "http://127.0.0.1"
    return {
        "scheduler": f"{local}:{SCHEDULER_METRICS_PORT}/readyz",
        **{
            f"worker-{lane}": f"{local}:{port}/readyz"
            for lane, port in WORKER_METRICS_PORTS.items()
        },
        "api": f"{api_base(api)}/readyz",
        "lag-exporter": f"{local}:{LAG_EXPORTER_PORT}/healthz",
    }


async def wait_until_ready(urls: dict[str, str], timeout_s: float) -> list[str]:
    """Poll every URL until each answers 200; returns the names still not ready at the
    deadline (empty when all are)."""
    import aiohttp

    pending = dict(urls)
    deadline = time.monotonic() + timeout_s
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while pending and time.monotonic() < deadline:
            for name, url in list(pending.items()):
                try:
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            del pending[name]
                except (aiohttp.ClientError, TimeoutError):
                    pass
            if pending:
                await asyncio.sleep(0.25)
    return sorted(pending)


def ready_line(started_s: float, api: ApiSettings, key: str | None) -> str:
    """The one line `kjs dev` prints once every process is ready."""
    parts = [
        f"kjs dev ready in {started_s:.1f}s",
        f"API {api_base(api)}",
        f"metrics http://127.0.0.1:{SCHEDULER_METRICS_PORT}/metrics (scheduler), "
        + ", ".join(f":{p} ({lane})" for lane, p in WORKER_METRICS_PORTS.items()),
        f"lag http://127.0.0.1:{LAG_EXPORTER_PORT}/metrics (or `kjs lag`)",
    ]
    if key is not None:
        # The key travels in the fragment, which the browser keeps to itself (console.js).
        parts.append(f"console {api_base(api)}/ui/#key={key}")
        parts.append(f"tenant {DEV_TENANT!r}: export KJS_API_KEY={key}")
    else:
        parts.append(f"console {api_base(api)}/ui/ (needs authentication on)")
    return " | ".join(parts)


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


async def run_dev(infra: InfraSettings, loglevel: str | None = None) -> int:
    """Bring the stack up, run it until a signal, and take down what it started.

    1. Note which services already run, then start the missing ones and wait until
       they answer.
    2. Apply migrations and create topics (both idempotent).
    3. Start the scheduler, one worker per lane, the API and the lag exporter as child
       processes, logging at WARNING unless ``--loglevel`` says otherwise.
    4. Once every child answers its readiness check, print one line: the URLs and the key.
    5. On Ctrl-C or SIGTERM (or a child's death), SIGTERM every child, wait for them
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
    seal_dev_secrets(infra.data_dir)
    children = await start_children(dict(_processes(loglevel or "warning")))
    api = load(ApiSettings)
    announce = asyncio.ensure_future(_announce(t0, api, key))
    try:
        code = await run_until_stopped(children)
    finally:
        announce.cancel()
    if not already:
        await supervisor.down(infra)
    return code


async def _announce(t0: float, api: ApiSettings, key: str | None) -> None:
    not_ready = await wait_until_ready(readiness_urls(api), READY_TIMEOUT_S)
    if not_ready:
        log.error(
            "kjs dev: not ready after %.0fs: %s (see their logs above)",
            READY_TIMEOUT_S,
            ", ".join(not_ready),
        )
        return
    # On stdout, so that the key can be copied (or captured) as is.
    print(ready_line(time.monotonic() - t0, api, key), flush=True)


def _allow_local_targets() -> None:
    """On a developer's machine the targets are local servers: let the children's HTTP
    target guard through loopback, unless the operator set the allowlist (production
    keeps the default, empty: loopback refused)."""
    if "KJS_HTTP_ALLOWLIST" not in os.environ:
        os.environ["KJS_HTTP_ALLOWLIST"] = json.dumps(["127.0.0.1", "::1"])
        log.info("kjs dev: HTTP targets on loopback are allowed (KJS_HTTP_ALLOWLIST)")


def seal_dev_secrets(data_dir: Path) -> None:
    """Secrets in dev jobs' targets are sealed too, with a key kept in the data dir (so they
    still open after a restart), unless the operator set KJS_SECRET_KEYS."""
    if "KJS_SECRET_KEYS" in os.environ:
        return
    from cryptography.fernet import Fernet

    path = data_dir / "dev-secret-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under another name, then renamed: a crash never leaves a partial key.
        fresh = path.with_suffix(f".{os.getpid()}")
        fd = os.open(fresh, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
        os.replace(fresh, path)
    key = path.read_text().strip()
    if not key:
        raise SystemExit(f"kjs dev: {path} is empty; delete it to make a new key")
    os.environ["KJS_SECRET_KEYS"] = json.dumps([key])
    log.info("kjs dev: secrets in targets are sealed with the key in %s", path)

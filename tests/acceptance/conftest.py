"""The whole system as users run it: ``kjs scheduler``, ``kjs worker`` and ``kjs api`` as
subprocesses, on the real broker and Postgres, with a local HTTP target that records calls.

The stack and the target are ``tests.support``'s; ``Stack``, ``Target`` and ``free_port`` are
importable from here too.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import asyncpg
import pytest
from cryptography.fernet import Fernet

from core.settings import KafkaSettings
from schemas.v1.statuses import LANES
from tests.conftest import RUN_ID
from tests.support.stack import Process, Stack, free_port
from tests.support.targets import RecordingTarget, serve_target
from tests.support.waiting import eventually
from topics.catalog import Catalog

__all__ = ["Stack", "Target", "free_port"]

# The name the acceptance tests know the recording target by.
Target = RecordingTarget

QUOTA_ACTIVE_TENANT = f"qa-{RUN_ID}"
QUOTA_RATE_TENANT = f"qr-{RUN_ID}"
QUOTA_DAILY_TENANT = f"qd-{RUN_ID}"
QUOTA_PAYLOAD_TENANT = f"qp-{RUN_ID}"
SECRET_KEY = Fernet.generate_key().decode()


@pytest.fixture(scope="session")
async def target() -> AsyncIterator[Target]:
    async with serve_target() as tgt:
        yield tgt


@pytest.fixture(scope="session")
async def stack(
    database_url: str,
    pool: asyncpg.Pool,
    topic_catalog: Catalog,
    kafka_settings: KafkaSettings,
    target: Target,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    logs = tmp_path_factory.mktemp("stack-logs")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
    env.update(
        KJS_KAFKA_BOOTSTRAP=kafka_settings.kafka_bootstrap,
        KJS_NAMESPACE=kafka_settings.namespace,
        KJS_COMMAND_PARTITIONS=str(kafka_settings.command_partitions),
        KJS_DUE_PARTITIONS=str(kafka_settings.due_partitions),
        KJS_DATABASE_URL=database_url,
        KJS_API_PORT=str(port),
        # The local target runs on 127.0.0.1, which the SSRF guard refuses unless allowed.
        KJS_HTTP_ALLOWLIST='["127.0.0.1"]',
        # Two tenants with tight quotas (tests/acceptance/test_security.py); the rest unlimited.
        KJS_QUOTA_TIERS=json.dumps(
            {
                "two-active": {"active_jobs": 2},
                "slow": {"submissions_per_s": 0.001, "burst": 2},
                "two-a-day": {"executions_per_day": 2},
                "small": {"payload_bytes": 1000},
            }
        ),
        # Secrets in targets are sealed at rest with this key (core.secrets).
        KJS_SECRET_KEYS=json.dumps([SECRET_KEY]),
        # The console's pipeline page (tests/acceptance/browser) sees lag move within seconds.
        KJS_CONSOLE_LAG_INTERVAL_S="5",
        KJS_QUOTA_TENANT_TIERS=json.dumps(
            {
                QUOTA_ACTIVE_TENANT: "two-active",
                QUOTA_RATE_TENANT: "slow",
                QUOTA_DAILY_TENANT: "two-a-day",
                QUOTA_PAYLOAD_TENANT: "small",
            }
        ),
    )
    kjs = [sys.executable, "-m", "kjs.cli"]
    ops_ports = {name: free_port() for name in ["scheduler", *(f"worker-{lane}" for lane in LANES)]}
    metrics = {name: ["--metrics-port", str(p)] for name, p in ops_ports.items()}
    processes = {
        "scheduler": Process(
            "scheduler", [*kjs, "scheduler", *metrics["scheduler"]], env, logs / "scheduler.log"
        ),
        **{
            f"worker-{lane}": Process(
                f"worker-{lane}",
                [*kjs, "worker", "--lane", lane, *metrics[f"worker-{lane}"]],
                env,
                logs / f"{lane}.log",
            )
            for lane in LANES
        },
        "api": Process("api", [*kjs, "api"], env, logs / "api.log"),
    }
    started = datetime.now(UTC)
    for proc in processes.values():
        await proc.start()
    http = aiohttp.ClientSession()
    st = Stack(
        env,
        topic_catalog,
        pool,
        processes,
        target,
        api_url=f"http://127.0.0.1:{port}",
        http=http,
        metrics_urls={name: f"http://127.0.0.1:{p}" for name, p in ops_ports.items()},
    )
    try:
        await _wait_ready(st)
        await st.wait_shards_owned(started)
        yield st
    except BaseException:
        for proc in processes.values():
            print(proc.tail(), file=sys.stderr)
        raise
    finally:
        await st.close()
        await http.close()
        await asyncio.gather(*(p.stop() for p in processes.values()))


async def _wait_ready(st: Stack) -> None:
    assert st.http is not None

    async def probe() -> bool:
        try:
            async with st.http.get(f"{st.api_url}/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    t0 = time.monotonic()
    await eventually(probe, 60, interval_s=0.2, what="the API to be ready")
    print(f"API ready after {time.monotonic() - t0:.1f}s", file=sys.stderr)


@pytest.fixture(autouse=True)
async def _authenticated(stack: Stack, user_id: str) -> AsyncIterator[None]:
    """Every acceptance test calls the API as its own tenant, with a key made as the CLI does."""
    from tests.conftest import make_api_key

    assert stack.http is not None
    stack.http.headers["Authorization"] = f"Bearer {await make_api_key(stack.pool, user_id)}"
    yield
    stack.http.headers.pop("Authorization", None)

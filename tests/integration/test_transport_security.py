"""kjs on a broker that only talks SASL/SCRAM-SHA-512 (and SASL over TLS): every client.

A private broker (infra/secure_broker.py) listens with SASL_PLAINTEXT and SASL_SSL only; the
shared PLAINTEXT broker is not involved. The stack runs as users run it (``kjs topics``,
``kjs scheduler``, ``kjs worker``, ``kjs api`` as subprocesses), configured only through
``KJS_KAFKA_*`` variables, so a client that ignored the settings would fail to connect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from api.publisher import CommandPublisher, KafkaUnavailable
from core.settings import KafkaSettings
from infra.secure_broker import SecureBroker, kafka_env, start_secure_broker
from lag.groups import monitored_groups
from lag.read import LagReader
from tests.acceptance.conftest import Process, free_port
from tests.conftest import RUN_ID, bearer, make_api_key
from tests.integration.worker_harness import http_target
from tests.support.targets import RecordingTarget
from tests.support.waiting import eventually
from topics.admin import KafkaRefused, create_topics
from topics.catalog import catalog
from topics.dead_letters import read_letters
from topics.producer import durable_producer
from topics.security import aiokafka_config

pytestmark = pytest.mark.services

__all__ = ["http_target"]  # a fixture, used by name

KJS = [sys.executable, "-m", "kjs.cli"]
# A refused client must say so quickly: never wait for a metadata or start-up timeout.
REFUSED_WITHIN_S = 5.0


@pytest.fixture(scope="module")
async def broker(
    services: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SecureBroker]:
    t0 = time.monotonic()
    b = await start_secure_broker(tmp_path_factory.mktemp("secure-broker"), tls=True)
    print(f"secure broker ready in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    try:
        yield b
    finally:
        await b.stop()


def _namespace(name: str) -> str:
    return f"ts{RUN_ID}{name}."


async def _run_kjs(env: dict[str, str], *args: str, timeout_s: float = 60.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *KJS, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_a_job_runs_end_to_end_over_sasl_ssl(
    broker: SecureBroker,
    database_url: str,
    pool: asyncpg.Pool,
    http_target: RecordingTarget,
    user_id: str,
    tmp_path: Path,
) -> None:
    """Topics, API, scheduler (faust), worker and lag reader, all over SCRAM on TLS."""
    kafka = broker.settings(
        tls=True, namespace=_namespace("e2e"), command_partitions=2, due_partitions=2
    )
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
    env |= kafka_env(kafka) | {
        "KJS_DATABASE_URL": database_url,
        "KJS_API_PORT": str(api_port),
        "KJS_HTTP_ALLOWLIST": '["127.0.0.1"]',
    }
    assert env["KJS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"

    # (a) kjs's admin path (librdkafka) creates the topics.
    code, out = await _run_kjs(env, "topics", "create")
    assert code == 0, out
    assert f"created {kafka.namespace}jobs.commands" in out

    processes = {
        "scheduler": Process("scheduler", [*KJS, "scheduler"], env, tmp_path / "scheduler.log"),
        "worker": Process(
            "worker", [*KJS, "worker", "--lane", "normal"], env, tmp_path / "worker.log"
        ),
        "api": Process("api", [*KJS, "api"], env, tmp_path / "api.log"),
    }
    api = f"http://127.0.0.1:{api_port}"
    headers = bearer(await make_api_key(pool, user_id))
    for proc in processes.values():
        await proc.start()
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            await _wait_api_ready(http, api)
            # (b) submitted through the API's producer, consumed by the faust scheduler,
            # fired to the due topic, run by the worker, reported back on the results topic.
            at = datetime.now(UTC) + timedelta(seconds=2)
            body = {
                "user_id": user_id,
                "name": "over-sasl-ssl",
                "schedule": {"type": "once", "at": at.isoformat()},
                "target": {"type": "http", "method": "POST", "url": http_target.url()},
            }
            async with http.post(f"{api}/v1/jobs", json=body) as resp:
                accepted = await resp.json()
                assert resp.status == 202, accepted
            job_id = accepted["job_id"]

            async def succeeded() -> dict[str, Any] | None:
                async with http.get(f"{api}/v1/jobs/{job_id}") as resp:
                    job: dict[str, Any] = await resp.json()
                    return job if job.get("status") == "succeeded" else None

            await eventually(succeeded, 90, interval_s=0.2, what="the job to succeed")
            assert len(http_target.hits) == 1

        # (b) the lag reader (librdkafka admin + aiokafka record consumer) reads the groups.
        reader = LagReader(kafka)
        cat = catalog(kafka)
        wanted = {cat.scheduler_group, cat.worker_group("normal")}

        async def groups_read() -> bool:
            read = await reader.read(monitored_groups(kafka))
            groups = {g.group: g for g in read.groups if g.group in wanted}
            return len(groups) == 2 and all(
                not g.errors and (g.members or 0) >= 1 and g.partitions and g.state == "STABLE"
                for g in groups.values()
            )

        await eventually(groups_read, 30, interval_s=0.5, what="the lag of both groups")
    except BaseException:
        for proc in processes.values():
            print(proc.tail(), file=sys.stderr)
        raise
    finally:
        await asyncio.gather(*(p.stop() for p in processes.values()))


async def _wait_api_ready(http: aiohttp.ClientSession, api: str) -> None:
    async def ready() -> bool:
        try:
            async with http.get(f"{api}/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(ready, 60, interval_s=0.2, what="the API to be ready")


async def test_sasl_plaintext_clients_produce_and_consume(broker: SecureBroker) -> None:
    """The in-process paths on the SASL_PLAINTEXT listener: admin, publisher, consumers."""
    kafka = broker.settings(namespace=_namespace("plain"), command_partitions=1, due_partitions=1)
    cat = catalog(kafka)
    assert len(await create_topics(kafka, cat)) == len(cat.all())
    publisher = CommandPublisher(kafka, timeout_s=10.0)
    try:
        await publisher.publish(cat.commands.name, b"u-1", b'{"probe": true}')
        assert await publisher.is_connected()
    finally:
        await publisher.close()
    consumer = AIOKafkaConsumer(
        cat.commands.name, **aiokafka_config(kafka), group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 10)
        assert (record.key, record.value) == (b"u-1", b'{"probe": true}')
    finally:
        await consumer.stop()
    assert await read_letters(kafka, cat) == []  # `kjs dlq list`'s consumer


async def test_a_wrong_password_is_refused_clearly_and_quickly(
    broker: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = broker.settings(password="not-the-password", namespace=_namespace("wrong"))

    t0 = time.monotonic()
    with pytest.raises(KafkaRefused, match="invalid credentials"):
        await create_topics(wrong, catalog(wrong))
    assert time.monotonic() - t0 < REFUSED_WITHIN_S

    caplog.set_level(logging.ERROR, logger="aiokafka")
    producer = durable_producer(wrong)
    t0 = time.monotonic()
    try:
        with pytest.raises(KafkaConnectionError):
            await producer.start()
    finally:
        await producer.stop()
    assert time.monotonic() - t0 < REFUSED_WITHIN_S
    assert "SaslAuthenticationFailed" in caplog.text

    publisher = CommandPublisher(wrong, timeout_s=REFUSED_WITHIN_S)
    try:
        with pytest.raises(KafkaUnavailable):
            await publisher.publish("any", b"k", b"v")
    finally:
        await publisher.close()

    # The CLI says why and exits, instead of hanging on the metadata request.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")} | kafka_env(wrong)
    code, out = await _run_kjs(env, "topics", "create", timeout_s=30)
    assert code == 2, out
    assert "Kafka refused the connection" in out and "invalid credentials" in out


async def test_tls_verifies_the_broker_certificate(
    broker: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Without our CA (the system trust store instead) the broker is not trusted."""
    untrusted = broker.settings(tls=True, kafka_ssl_cafile=None)
    with pytest.raises(KafkaRefused, match="certificate verify failed"):
        await create_topics(untrusted, catalog(untrusted))
    caplog.set_level(logging.ERROR, logger="aiokafka")
    producer = durable_producer(untrusted)
    try:
        with pytest.raises(KafkaConnectionError):
            await producer.start()
    finally:
        await producer.stop()
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_the_broker_has_no_plaintext_listener(broker: SecureBroker) -> None:
    props = broker.layout.kafka_properties.read_text()
    listeners = next(line for line in props.splitlines() if line.startswith("listeners="))
    assert "PLAINTEXT://" not in listeners.replace("SASL_PLAINTEXT://", "")
    assert isinstance(broker.settings(), KafkaSettings)

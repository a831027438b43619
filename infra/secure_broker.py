"""A private, throw-away broker that only talks to authenticated clients: SASL/SCRAM, and
SASL over TLS when asked for.

The shared development broker (infra/broker.py) is PLAINTEXT on loopback. The transport
security tests need the opposite, on free ports in a temporary folder, so that they neither
disturb nor depend on the shared one:

- the same jars (already resolved in the data dir), JVM flags and KRaft combined mode;
- the same ``server.properties``, with its listeners replaced: ``SASL_PLAINTEXT`` (always)
  and ``SASL_SSL`` (with ``tls=True``) for clients and between brokers, the controller
  listener left PLAINTEXT on loopback;
- the SCRAM user bootstrapped into the cluster metadata when the storage is formatted
  (``kafka-storage format --add-scram``), so it exists before the first client connects;
- for TLS, a CA and a broker certificate (for ``localhost`` and ``127.0.0.1``) made with
  ``cryptography`` (``infra.pki.make_pki``), the broker's as a PEM key store.

Ready means what it means for the shared broker (a topic can be created, the group
coordinator answers), checked through kjs's own client mapping (topics/security.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from core.settings import InfraSettings, KafkaSettings
from infra.broker import (
    MAIN_CLASS,
    _java_argv,
    format_storage,
    groups_ready,
    probe,
    server_properties,
)
from infra.jars import resolve_jars
from infra.paths import Layout
from infra.pki import TLS_HOST, Pki, make_pki
from infra.process import (
    LOOPBACK,
    InfraError,
    log_tail,
    pid_alive,
    port_open,
    spawn_detached,
    terminate,
)
from topics.security import librdkafka_config

SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class SecureBroker:
    layout: Layout
    pid: int
    sasl_port: int
    tls_port: int | None
    mechanism: str
    username: str
    password: str
    pki: Pki | None

    @property
    def marker(self) -> str:
        return f"{MAIN_CLASS} {self.layout.kafka_properties}"

    def settings(
        self, *, tls: bool = False, password: str | None = None, **update: Any
    ) -> KafkaSettings:
        """Client settings for this broker: SASL_PLAINTEXT, or SASL_SSL verified by the CA."""
        fields: dict[str, Any] = {
            "kafka_sasl_mechanism": self.mechanism,
            "kafka_sasl_username": self.username,
            "kafka_sasl_password": self.password if password is None else password,
        }
        if tls:
            if self.tls_port is None or self.pki is None:
                raise ValueError("this broker was started without tls=True")
            fields |= {
                "kafka_bootstrap": f"{TLS_HOST}:{self.tls_port}",
                "kafka_security_protocol": "SASL_SSL",
                "kafka_ssl_cafile": self.pki.ca,
            }
        else:
            fields |= {
                "kafka_bootstrap": f"{LOOPBACK}:{self.sasl_port}",
                "kafka_security_protocol": "SASL_PLAINTEXT",
            }
        return KafkaSettings(**(fields | update))

    async def stop(self) -> None:
        await terminate(self.pid, self.marker, 10.0)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.layout.kafka_server_log, lines)


def kafka_env(kafka: KafkaSettings) -> dict[str, str]:
    """The ``KJS_*`` variables that make a ``kjs`` process use ``kafka``'s settings."""
    env = {}
    for name, value in kafka.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        text = str(value).lower() if isinstance(value, bool) else str(value)
        env[f"KJS_{name.upper()}"] = text
    return env


def _overrides(
    infra: InfraSettings,
    sasl_port: int,
    tls_port: int | None,
    mechanism: str,
    jaas: str,
    pki: Pki | None,
) -> dict[str, str]:
    controller = infra.kafka_controller_port
    listeners = {"SASL_PLAINTEXT": f"{LOOPBACK}:{sasl_port}"}
    advertised = dict(listeners)
    if tls_port is not None:
        listeners["SASL_SSL"] = f"{LOOPBACK}:{tls_port}"
        advertised["SASL_SSL"] = f"{TLS_HOST}:{tls_port}"
    props = {
        "listeners": ",".join(
            [*(f"{n}://{a}" for n, a in listeners.items()), f"CONTROLLER://{LOOPBACK}:{controller}"]
        ),
        "advertised.listeners": ",".join(f"{n}://{a}" for n, a in advertised.items()),
        "listener.security.protocol.map": ",".join(
            [*(f"{n}:{n}" for n in listeners), "CONTROLLER:PLAINTEXT"]
        ),
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": mechanism,
        "sasl.mechanism.inter.broker.protocol": mechanism,
    }
    for name in listeners:
        props[f"listener.name.{name.lower()}.{mechanism.lower()}.sasl.jaas.config"] = jaas
    if pki is not None:
        props |= {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(pki.server),
            "ssl.client.auth": "none",
        }
    return props


def _configure(
    home: Path, infra: InfraSettings, username: str, password: str, mechanism: str, tls: bool
) -> tuple[SecureBroker, InfraSettings]:
    """Pick free ports, make the certificates, write ``server.properties`` (pid still 0)."""
    sasl_port, controller = free_port(), free_port()
    tls_port = free_port() if tls else None
    layout = Layout(home.resolve())
    mine = infra.model_copy(update={"kafka_port": sasl_port, "kafka_controller_port": controller})
    pki = make_pki(layout.root / "pki") if tls else None
    jaas = f'{SCRAM_LOGIN} required username="{username}" password="{password}";'
    layout.kafka_logs.mkdir(parents=True, exist_ok=True)
    overrides = _overrides(mine, sasl_port, tls_port, mechanism, jaas, pki)
    layout.kafka_properties.write_text(server_properties(layout, mine, overrides))
    broker = SecureBroker(layout, 0, sasl_port, tls_port, mechanism, username, password, pki)
    return broker, mine


async def start_secure_broker(
    home: Path,
    *,
    username: str = "kjs",
    password: str = "kjs-secret",
    mechanism: str = "SCRAM-SHA-512",
    tls: bool = False,
    ready_s: float = 90.0,
    infra: InfraSettings | None = None,
) -> SecureBroker:
    """Start the broker in ``home`` (a fresh folder) and return once clients can use it.

    The jars are the shared data dir's (``KJS_DATA_DIR``), resolved by Maven if missing.
    """
    infra = infra or InfraSettings()
    libs = await resolve_jars(Layout.of(infra), infra.kafka_version)
    broker, mine = _configure(home, infra, username, password, mechanism, tls)
    layout = broker.layout
    scram = f"{mechanism}=[name={username},password={password}]"
    await format_storage(layout, mine, libs, ["--add-scram", scram])
    argv = [*_java_argv(layout, mine, libs, MAIN_CLASS), str(layout.kafka_properties)]
    broker.pid = await spawn_detached(argv, layout.kafka_out)
    try:
        await _wait_ready(broker, time.monotonic() + ready_s)
    except BaseException:
        await broker.stop()
        raise
    return broker


async def _wait_ready(broker: SecureBroker, deadline: float) -> None:
    admin: AdminClient | None = None
    while True:
        if not pid_alive(broker.pid, broker.marker):
            raise InfraError(f"secure broker (pid {broker.pid}) exited\n{broker.log_tail()}")
        if admin is None and await port_open(broker.sasl_port):
            config = librdkafka_config(broker.settings())
            admin = AdminClient(config | {"socket.connection.setup.timeout.ms": 5000})
        if admin is not None and await probe(admin) and await groups_ready(admin):
            return
        if time.monotonic() >= deadline:
            raise InfraError(f"secure broker not ready in time\n{broker.log_tail()}")
        await asyncio.sleep(0.25)


@contextlib.asynccontextmanager
async def secure_broker(home: Path, **options: Any) -> AsyncIterator[SecureBroker]:
    """:func:`start_secure_broker`, stopped on exit."""
    broker = await start_secure_broker(home, **options)
    try:
        yield broker
    finally:
        await broker.stop()

"""Where the local services keep their state, under one data dir.

One folder (``KJS_DATA_DIR``, default ``.kjs`` in the working directory) holds jars, data,
logs and PID files, so a developer can reset everything with ``rm -rf .kjs`` and two checkouts
never share a broker by accident. The path is resolved once, because the services run with a
different working directory (and, for Postgres, as another user).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from core.settings import InfraSettings
from infra.process import InfraError


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def of(cls, infra: InfraSettings) -> Layout:
        return cls(infra.data_dir.expanduser().resolve())

    # --- Kafka ---
    def kafka_libs(self, version: str) -> Path:
        return self.root / "kafka-libs" / version

    @property
    def kafka_home(self) -> Path:
        return self.root / "kafka"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_home / "data"

    @property
    def kafka_logs(self) -> Path:
        return self.kafka_home / "logs"

    @property
    def kafka_properties(self) -> Path:
        return self.kafka_home / "server.properties"

    @property
    def kafka_out(self) -> Path:
        """The JVM's own stdout/stderr: only crashes and JVM warnings land here."""
        return self.kafka_logs / "broker.out"

    @property
    def kafka_server_log(self) -> Path:
        return self.kafka_logs / "server.log"

    @property
    def kafka_pid(self) -> Path:
        return self.root / "run" / "kafka.pid"

    # --- Postgres ---
    @property
    def pg_home(self) -> Path:
        return self.root / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg_home / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_home / "run"

    @property
    def pg_log(self) -> Path:
        return self.pg_home / "postgres.log"

    @property
    def pg_pid(self) -> Path:
        """Written by Postgres itself; its first line is the postmaster's PID."""
        return self.pg_data / "postmaster.pid"

    @property
    def lock(self) -> Path:
        return self.root / "run" / "supervisor.lock"


@contextlib.asynccontextmanager
async def exclusive(layout: Layout, timeout_s: float) -> AsyncIterator[None]:
    """Serialise ``up`` and ``down`` across processes.

    A test session's fixture, ``.ci/run`` and a developer's ``kjs infra up`` may race; without
    a lock two of them would both see "not running" and start two brokers on one data dir.
    The lock is an advisory ``flock`` that the kernel drops if its holder dies.
    """
    layout.lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise InfraError(
                        f"another kjs infra command holds {layout.lock} for over {timeout_s:.0f} s"
                    ) from None
                await asyncio.sleep(0.2)
        yield
    finally:
        os.close(fd)

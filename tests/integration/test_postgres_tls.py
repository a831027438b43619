"""kjs on a Postgres that takes TCP clients over TLS only: the DSN's libpq options reach asyncpg.

A private cluster (``infra.database.start(..., tls=...)``, its own port and data dir, a
certificate made by ``infra.pki``) refuses TCP clients without TLS, so a process that dropped
``sslmode``/``sslrootcert`` from ``KJS_DATABASE_URL`` could not connect at all. The processes
run as users run them (``kjs db migrate``, ``kjs keys create``), and a pool is made the way the
API, scheduler and workers make theirs (``core.db.create_pool``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.db import StoreUnavailable, create_pool
from core.settings import DatabaseSettings, InfraSettings
from infra import database
from infra.pki import TLS_HOST, Pki, make_pki
from infra.secure_broker import free_port

pytestmark = pytest.mark.services


@dataclass(frozen=True)
class TlsPostgres:
    port: int
    pki: Pki

    def dsn(self, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://kjs@{TLS_HOST}:{self.port}/kjs?{query}"

    def verified(self) -> str:
        return self.dsn(sslmode="verify-full", sslrootcert=str(self.pki.ca))


def _reachable_home() -> Path:
    """A data dir the postgres user can reach: pytest's tmp dirs are private to their owner."""
    home = Path(tempfile.mkdtemp(prefix="kjs-pg-tls-", dir="/tmp"))
    home.chmod(0o755)
    return home


@pytest.fixture(scope="module")
async def tls_postgres(services: None) -> AsyncIterator[TlsPostgres]:
    home = _reachable_home()
    infra = InfraSettings(data_dir=home, postgres_port=free_port())
    pki = make_pki(home / "pki")
    t0 = time.monotonic()
    await database.start(infra, ready_s=60, tls=pki)
    print(f"TLS Postgres ready in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    try:
        yield TlsPostgres(infra.postgres_port, pki)
    finally:
        await database.stop(infra)
        shutil.rmtree(home, ignore_errors=True)


async def _kjs(dsn: str, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kjs.cli",
        *args,
        env={**env, "KJS_DATABASE_URL": dsn},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_the_cli_and_the_pools_work_over_verified_tls(tls_postgres: TlsPostgres) -> None:
    dsn = tls_postgres.verified()
    rc, out = await _kjs(dsn, "db", "migrate")
    assert rc == 0, out
    rc, out = await _kjs(dsn, "keys", "create", "--user-id", "tls-tenant", "--scope", "read")
    assert rc == 0, out
    assert any(line.startswith("kjs_") for line in out.splitlines()), out  # the key printed

    pool = await create_pool(DatabaseSettings(database_url=dsn))
    try:
        ssl, version = await pool.fetchrow(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        keys = await pool.fetchval("SELECT count(*) FROM kjs_api_keys WHERE user_id = 'tls-tenant'")
    finally:
        await pool.close()
    assert ssl is True and version.startswith("TLS")
    assert keys == 1


async def test_without_tls_or_with_an_unknown_ca_the_connection_is_refused(
    tls_postgres: TlsPostgres, tmp_path: Path
) -> None:
    with pytest.raises(StoreUnavailable, match=r"no encryption|pg_hba"):
        await create_pool(DatabaseSettings(database_url=tls_postgres.dsn(sslmode="disable")))
    stranger = make_pki(tmp_path / "other-ca")
    unknown_ca = tls_postgres.dsn(sslmode="verify-full", sslrootcert=str(stranger.ca))
    with pytest.raises(StoreUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
        await create_pool(DatabaseSettings(database_url=unknown_ca))
    rc, out = await _kjs(unknown_ca, "db", "migrate")
    assert rc != 0
    assert "certificate verify failed" in out.lower() or "CERTIFICATE_VERIFY_FAILED" in out

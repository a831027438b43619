"""``kjs keys create|list|revoke`` as a user runs them: subprocesses against the real store."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import asyncpg
import pytest

from api.keys import Authenticator, hash_key
from kjs.dev import DEV_TENANT, dev_key

pytestmark = pytest.mark.services


async def kjs(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
    env["KJS_DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kjs.cli",
        "keys",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_create_prints_only_the_key_list_shows_it_revoke_kills_it(
    database_url: str, pool: asyncpg.Pool, user_id: str
) -> None:
    code, out, err = await kjs(
        database_url, "create", "--user-id", user_id, "--scope", "read", "--scope", "write"
    )
    assert code == 0, err
    key = out.strip()
    assert key.startswith("kjs_") and "\n" not in key
    principal = await Authenticator(pool, cache_s=0).authenticate(key)
    assert principal is not None
    assert (principal.user_id, principal.scopes) == (user_id, frozenset({"read", "write"}))
    # Only the hash is stored: the key itself appears nowhere in the table.
    rows = await pool.fetch("SELECT * FROM kjs_api_keys WHERE user_id = $1", user_id)
    assert len(rows) == 1
    assert bytes(rows[0]["key_hash"]) == hash_key(key)
    assert key not in json.dumps([dict(r) for r in rows], default=str)

    code, out, err = await kjs(database_url, "list", "--user-id", user_id, "--json")
    assert code == 0, err
    # Service keys covering every tenant (other tests') are listed too; this tenant's own:
    (listed,) = [k for k in map(json.loads, out.splitlines()) if k["user_id"] == user_id]
    assert listed["key_id"] == str(principal.key_id)
    assert listed["scopes"] == ["read", "write"]
    assert listed["revoked_at"] is None
    assert key not in out

    code, out, err = await kjs(database_url, "revoke", str(principal.key_id))
    assert code == 0, err
    assert await Authenticator(pool, cache_s=0).authenticate(key) is None
    code, out, _ = await kjs(database_url, "list", "--user-id", user_id)
    assert "revoked" in out
    code, _, err = await kjs(database_url, "revoke", str(principal.key_id))
    assert code == 1 and "no active key" in err


@pytest.mark.parametrize(
    "args",
    [
        ("create", "--user-id", "u1", "--scope", "root"),
        ("create", "--user-id", "bad user", "--scope", "read"),
        ("create", "--scope", "read"),
        ("revoke", "not-a-uuid"),
    ],
)
async def test_bad_requests_exit_2(database_url: str, args: tuple[str, ...]) -> None:
    code, out, err = await kjs(database_url, *args)
    assert code == 2
    assert out == ""
    assert err.startswith("kjs: ") and err.count("\n") == 1


async def test_kjs_dev_makes_a_ready_key_for_the_local_tenant(
    database_url: str, pool: asyncpg.Pool
) -> None:
    key = await dev_key(database_url)
    principal = await Authenticator(pool, cache_s=0).authenticate(key)
    assert principal is not None
    assert principal.user_id == DEV_TENANT
    assert principal.scopes == frozenset({"read", "write"})

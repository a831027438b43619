"""``kjs keys``: create, list and revoke API keys in the job store."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Sequence

import asyncpg

from api.keys import ActsFor, KeyError_, create_key, list_keys, revoke_key


async def create(dsn: str, acts_for: ActsFor, scopes: Sequence[str], name: str = "") -> int:
    """Print the new key alone on stdout (so ``KEY=$(kjs keys create ...)`` works)."""
    conn = await asyncpg.connect(dsn)
    try:
        key_id, key = await create_key(conn, acts_for, scopes, name)
    except KeyError_ as exc:
        print(f"kjs: {exc}", file=sys.stderr)
        return 2
    finally:
        await conn.close()
    print(key)
    print(f"created key {key_id} for {acts_for.describe()} ({', '.join(scopes)})", file=sys.stderr)
    return 0


async def listing(dsn: str, user_id: str | None, as_json: bool) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        keys = await list_keys(conn, user_id)
    finally:
        await conn.close()
    for info in keys:
        who = info.acts_for
        row = {
            "key_id": str(info.key_id),
            "user_id": who.user_id,
            "tenants": list(who.tenants) or None,
            "all_tenants": who.all_tenants,
            "scopes": list(info.scopes),
            "name": info.name,
            "created_at": info.created_at.isoformat(),
            "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
        }
        if as_json:
            print(json.dumps(row))
        else:
            state = "revoked" if info.revoked_at else "active"
            scopes = ",".join(info.scopes)
            print(f"{row['key_id']}  {who.describe()}  {scopes}  {state}  {info.name}")
    return 0


async def revoke(dsn: str, key_id: uuid.UUID) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        done = await revoke_key(conn, key_id)
    finally:
        await conn.close()
    if not done:
        print(f"kjs: no active key {key_id}", file=sys.stderr)
        return 1
    print(f"revoked {key_id}")
    return 0

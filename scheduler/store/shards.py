"""A shard's epoch: claimed on assignment, checked by every write (the fence).

The fence is a ``SELECT ... FOR SHARE`` of the shard's row at the start of each write
transaction. A new owner's epoch bump is an ``UPDATE`` of that row, so it waits for the old
owner's in-flight transactions, and every later transaction of the old owner finds the new
epoch and raises :class:`Fenced` before it writes anything (invariant 3).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from core.queries import QUERIES


class Fenced(RuntimeError):
    """This process no longer owns the shard; another instance bumped its epoch."""


async def claim_shard(pool: asyncpg.Pool, shard: int, owner: str) -> int:
    """Take ownership of a shard; returns the new epoch that fences the previous owner."""
    epoch: int = await pool.fetchval(QUERIES["claim_shard"], shard, owner)
    return epoch


@asynccontextmanager
async def fenced(pool: asyncpg.Pool, shard: int, epoch: int) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on a connection of ``pool`` that holds ``epoch`` of ``shard``, or
    :class:`Fenced` before anything is written."""
    async with pool.acquire() as conn, conn.transaction():
        current = await conn.fetchval(QUERIES["shard_epoch"], shard)
        if current != epoch:
            raise Fenced(f"shard {shard}: holding epoch {epoch}, current is {current}")
        yield conn

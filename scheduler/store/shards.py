"""A shard's epoch: claimed on assignment, checked by every write (the fence).

The fence is a ``SELECT ... FOR SHARE`` of the shard's row at the start of each write
transaction. A new owner's epoch bump is an ``UPDATE`` of that row, so it waits for the old
owner's in-flight transactions, and every later transaction of the old owner finds the new
epoch and raises :class:`Fenced` before it writes anything (invariant 3).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from core.queries import QUERIES


class Fenced(RuntimeError):
    """This process no longer owns the shard; another instance (or a resize) bumped its epoch."""

    def __init__(self, shard: int, held: int, current: int | None) -> None:
        super().__init__(f"shard {shard}: holding epoch {held}, current is {current}")
        self.shard = shard
        self.held = held


@dataclass(frozen=True)
class Claim:
    epoch: int
    # The partition count the shard's tenants are routed by under this epoch; None: the
    # configured count (no resize ever happened).
    partitions: int | None


async def take_shard(pool: asyncpg.Pool, shard: int, owner: str) -> Claim:
    """Take ownership of a shard: a new epoch that fences the previous owner, and the count."""
    row = await pool.fetchrow(QUERIES["claim_shard"], shard, owner)
    return Claim(row["epoch"], row["partitions"])


async def claim_shard(pool: asyncpg.Pool, shard: int, owner: str) -> int:
    """Take ownership of a shard; returns the new epoch that fences the previous owner."""
    return (await take_shard(pool, shard, owner)).epoch


async def reclaim_resized_shard(pool: asyncpg.Pool, shard: int, owner: str) -> Claim | None:
    """Take back a shard a resize fenced, unless another instance claimed it since."""
    row = await pool.fetchrow(QUERIES["reclaim_resized_shard"], shard, owner)
    return None if row is None else Claim(row["epoch"], row["partitions"])


async def resized_shards(pool: asyncpg.Pool, shards: list[int]) -> list[int]:
    """Those of ``shards`` a resize fenced and nobody took back since."""
    rows = await pool.fetch(QUERIES["resized_shards"], shards)
    return [r["shard"] for r in rows]


@asynccontextmanager
async def fenced(pool: asyncpg.Pool, shard: int, epoch: int) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on a connection of ``pool`` that holds ``epoch`` of ``shard``, or
    :class:`Fenced` before anything is written."""
    async with pool.acquire() as conn, conn.transaction():
        current = await conn.fetchval(QUERIES["shard_epoch"], shard)
        if current != epoch:
            raise Fenced(shard, epoch, current)
        yield conn

"""The Postgres side of ``kjs shards resize`` (scheduler/resize.py): its row, its lock, and
the one transaction that fences every shard and moves the tenants."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from core.queries import QUERIES
from schemas.v1.statuses import RESIZE_STEPS

# Steps of a resize, in order (kjs_resizes.step).
STARTED, GROWN, MOVED, DONE = RESIZE_STEPS


@dataclass(frozen=True)
class Unfinished:
    resize_id: int
    from_partitions: int
    to_partitions: int
    step: str


@dataclass(frozen=True)
class Tenants:
    """Who moves: jobs and unfinished executions per tenant and shard."""

    jobs: list[tuple[str, int, int]]
    executions: list[tuple[str, int, int]]

    def moves(self, shard_of: Callable[[str], int]) -> tuple[int, int, int]:
        """(jobs moving, unfinished executions moving, tenants moving)."""
        jobs = sum(n for user, shard, n in self.jobs if shard_of(user) != shard)
        runs = sum(n for user, shard, n in self.executions if shard_of(user) != shard)
        users = {u for u, s, _ in [*self.jobs, *self.executions] if shard_of(u) != s}
        return jobs, runs, len(users)

    def users(self) -> list[str]:
        return sorted({u for u, _, _ in [*self.jobs, *self.executions]})


async def try_lock(conn: asyncpg.Connection) -> bool:
    """The resize lock, held by ``conn``'s session until it closes (a crash frees it)."""
    locked: bool = await conn.fetchval(QUERIES["resize_try_lock"])
    return locked


async def unfinished(conn: asyncpg.Connection) -> Unfinished | None:
    row = await conn.fetchrow(QUERIES["resize_unfinished"])
    return None if row is None else Unfinished(**dict(row))


async def start(conn: asyncpg.Connection, from_partitions: int, to_partitions: int) -> int:
    resize_id: int = await conn.fetchval(QUERIES["resize_start"], from_partitions, to_partitions)
    return resize_id


async def record_step(conn: asyncpg.Connection, resize_id: int, step: str) -> None:
    await conn.execute(QUERIES["resize_step"], resize_id, step)


async def finish(conn: asyncpg.Connection, resize_id: int) -> None:
    await conn.execute(QUERIES["resize_done"], resize_id)


async def tenants(conn: asyncpg.Connection) -> Tenants:
    jobs = await conn.fetch(QUERIES["resize_job_tenants"])
    runs = await conn.fetch(QUERIES["resize_execution_tenants"])
    return Tenants([tuple(r) for r in jobs], [tuple(r) for r in runs])


async def fence_and_move(
    conn: asyncpg.Connection, resize_id: int, partitions: int, shard_of: Callable[[str], int]
) -> tuple[int, int]:
    """In one transaction: bump the epoch of shards 0..partitions-1 in the resize's name (which
    waits for every in-flight fenced write and fences every later one of the old owners), then
    move each tenant's jobs and unfinished executions to ``shard_of(user)``, and record the
    step. Returns (jobs moved, executions moved). All or nothing."""
    async with conn.transaction():
        await conn.execute(QUERIES["resize_fence_shards"], partitions)
        # Read after the fence: no shard writes between this read and the commit.
        users = (await tenants(conn)).users()
        shards = [shard_of(u) for u in users]
        jobs = await conn.execute(QUERIES["resize_move_jobs"], users, shards)
        runs = await conn.execute(QUERIES["resize_move_executions"], users, shards)
        moved = int(jobs.split()[-1]), int(runs.split()[-1])
        await conn.execute(QUERIES["resize_moved"], resize_id, *moved)
    return moved


async def unclaimed_shards(conn: asyncpg.Connection, partitions: int) -> list[int]:
    rows = await conn.fetch(QUERIES["resize_unclaimed_shards"], partitions)
    return [r["shard"] for r in rows]

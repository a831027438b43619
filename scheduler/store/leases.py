"""The shard's lease reaper: executions whose worker stopped extending its lease."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from core.queries import QUERIES
from scheduler.model import Occurrence
from scheduler.store.events import execution_events
from scheduler.store.shards import fenced


async def requeue_expired(
    pool: asyncpg.Pool, shard: int, epoch: int, now: datetime | None = None
) -> list[Occurrence]:
    """Put back executions whose worker stopped extending its lease (it died mid-run).

    They return to 'queued' and are dispatched again with the same execution id, so the
    target sees the same Idempotency-Key: completion is at least once, and a target that
    honours the key does the work once. A lease has lapsed when its ``lease_until`` is
    before ``now`` (a test's clock) or, by default, before Postgres's ``now()``: the clock
    the workers stamped the lease with.
    """
    # Asked every second per shard, and almost always "none": one indexed read first, and
    # the fenced transaction (four round trips) only when there is something to re-queue.
    if not await pool.fetchval(QUERIES["any_lease_lapsed"], shard, now):
        return []
    async with fenced(pool, shard, epoch) as conn:
        rows = await conn.fetch(QUERIES["requeue_lapsed_executions"], shard, now)
        await execution_events(conn, [r["execution_id"] for r in rows])
    return [Occurrence(**dict(r)) for r in rows]

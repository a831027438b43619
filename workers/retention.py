"""Pruning old execution logs in small batches, safe to run from every worker at once.

``kjs_executions`` is the hottest table: the scheduler inserts and updates it on every fire and
result, workers claim and heartbeat on it. A single ``DELETE ... WHERE finished_at < cutoff``
over months of history would hold its row locks and bloat WAL for as long as it runs, so the
pruner deletes a bounded batch per statement, each its own short transaction.

``FOR UPDATE SKIP LOCKED`` in the batch's selection makes concurrent pruners (one per worker
process) take disjoint rows instead of queueing behind each other, and makes the pruner pass
over any row the scheduler is writing at that moment instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg

from core.clock import utcnow
from core.queries import QUERIES

log = logging.getLogger(__name__)

DEFAULT_BATCH = 1000


async def prune_batches(
    pool: asyncpg.Pool, cutoff: datetime, batch: int = DEFAULT_BATCH
) -> AsyncIterator[int]:
    """Delete finished executions older than ``cutoff``, yielding each batch's count.

    1. Select up to ``batch`` finished rows older than the cutoff, oldest first, skipping
       rows another transaction holds; delete them by ``ctid`` in the same statement (one
       snapshot, so a ctid cannot name another row).
    2. Commit (autocommit: each statement is its own transaction), and repeat.
    3. Stop at the first empty batch: nothing older is left that is not someone else's.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    while True:
        status = await pool.execute(QUERIES["prune_executions"], cutoff, batch)
        deleted = int(status.split()[-1])
        if deleted == 0:
            return
        yield deleted


async def prune_executions(
    pool: asyncpg.Pool,
    older_than: timedelta,
    batch: int = DEFAULT_BATCH,
    *,
    now: datetime | None = None,
) -> int:
    """Delete executions that finished more than ``older_than`` ago; returns how many.

    The cutoff is fixed when the call starts, so a long prune converges instead of chasing
    rows that age past a moving cutoff while it runs.
    """
    cutoff = (now or utcnow()) - older_than
    total = 0
    async for deleted in prune_batches(pool, cutoff, batch):
        total += deleted
    return total


async def prune_periodically(
    pool: asyncpg.Pool,
    older_than: timedelta,
    interval_s: float,
    batch: int = DEFAULT_BATCH,
) -> None:
    """Prune now and then every ``interval_s`` until cancelled; failures wait for the next."""
    while True:
        try:
            deleted = await prune_executions(pool, older_than, batch)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("pruning executions failed: %s", exc)
        else:
            if deleted:
                log.info("pruned %d executions finished over %s ago", deleted, older_than)
        await asyncio.sleep(interval_s)

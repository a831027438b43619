"""Leases on running executions, so the owning shard can tell a dead worker from a slow job.

A claim gives the execution a short lease (``lease_until = now + ttl``); while the attempt runs,
this worker extends the leases of all its running executions together, one statement every
``interval_s``. A live worker's leases therefore never lapse, however long its jobs take; a
dead, frozen or partitioned worker's lapse within ``ttl`` (not within the job's timeout), and a
reaper can act on ``status = 'running' AND lease_until < now()`` with confidence.

The statement only touches rows still ``running`` under this worker's name: once the shard
recorded the result, or gave the execution to someone else, the lease is not ours to extend.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

import asyncpg

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 5.0
# Six missed heartbeats: a Postgres blip or a long GC pause does not look like a dead worker.
LEASE_TTL_S = 30.0
MAX_BATCH = 1000

EXTEND_SQL = """
UPDATE kjs_executions AS e
   SET lease_until = now() + make_interval(secs => $3)
  FROM unnest($1::uuid[]) AS h (execution_id)
 WHERE e.execution_id = h.execution_id
   AND e.status = 'running'
   AND e.worker = $2
RETURNING e.execution_id
"""


class LeaseKeeper:
    def __init__(
        self,
        pool: asyncpg.Pool,
        worker: str,
        *,
        interval_s: float = HEARTBEAT_INTERVAL_S,
        ttl_s: float = LEASE_TTL_S,
    ) -> None:
        if ttl_s <= interval_s:
            raise ValueError("a lease must outlive the interval between its extensions")
        self._pool = pool
        self._worker = worker
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        # A count per id: a re-dispatched execution can be claimed again by this worker
        # while its first attempt here still winds down.
        self._held: dict[UUID, int] = {}
        # Heartbeats sent; tests wait on it instead of on time.
        self.beats = 0

    def hold(self, execution_id: UUID) -> None:
        self._held[execution_id] = self._held.get(execution_id, 0) + 1

    def release(self, execution_id: UUID) -> None:
        count = self._held.pop(execution_id, 0) - 1
        if count > 0:
            self._held[execution_id] = count

    def held(self) -> frozenset[UUID]:
        return frozenset(self._held)

    async def extend(self) -> set[UUID]:
        """Extend every held lease now; returns the ids whose lease was extended.

        Sorted, and in bounded batches: each statement locks its rows in one order and
        briefly, so it cannot deadlock with another worker's or hold up the shard's writes.
        """
        ids = sorted(self._held)
        extended: set[UUID] = set()
        for start in range(0, len(ids), MAX_BATCH):
            rows = await self._pool.fetch(
                EXTEND_SQL, ids[start : start + MAX_BATCH], self._worker, self.ttl_s
            )
            extended.update(row["execution_id"] for row in rows)
        lost = set(ids) - extended
        if lost:
            # Recorded or reassigned meanwhile; the attempt itself goes on to its report.
            log.debug("leases no longer ours: %s", sorted(lost))
        self.beats += 1
        return extended

    async def run(self) -> None:
        """Extend leases every ``interval_s`` until cancelled; a failure waits for the next."""
        while True:
            await asyncio.sleep(self.interval_s)
            if not self._held:
                continue
            try:
                await self.extend()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("extending %d leases failed: %s", len(self._held), exc)

"""Leases on running executions, so the owning shard can tell a dead worker from a slow job.

A claim gives the execution a short lease (``lease_until = now + ttl``); while the attempt runs,
this worker extends the leases of all its running executions together, one statement every
``interval_s``. A live worker's leases therefore never lapse, however long its jobs take; a
dead, frozen or partitioned worker's lapse within ``ttl`` (not within the job's timeout), and a
reaper can act on ``status = 'running' AND lease_until < now()`` with confidence.

The statement only touches rows still ``running`` under this worker's name: once the shard
recorded the result, or gave the execution to someone else, the lease is not ours to extend.

A reported attempt is not finished in Postgres until the shard has consumed its result from
``jobs.results``, which under load can take longer than the lease. Its lease is therefore
handed over, not dropped: the next heartbeat extends it to ``REPORTED_TTL_S``, long enough for
any sane results lag, so an overloaded shard never mistakes a done attempt for a dead worker
and runs it again. The result is durable in Kafka by then (acked), so nothing waits on this
worker being alive any more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from uuid import UUID

import asyncpg

from core.queries import QUERIES

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 1.0
# Six missed heartbeats: a Postgres blip or a GC pause does not look like a dead worker, and
# a killed worker's execution runs again within about 8.5 s (the lease, then the shard's
# reaper, which looks every second: scheduler.timer.REAP_INTERVAL_S, then a live member of
# the lane, which has its partitions by then: workers.main.WorkerTuning.session_timeout_ms).
LEASE_TTL_S = 7.0
# The lease of an attempt whose result is acked in jobs.results, until the shard records it.
REPORTED_TTL_S = 600.0
MAX_BATCH = 1000


class LeaseKeeper:
    """The leases of one worker's claimed executions, renewed shortly before they run out.

    A lease is renewed only when less than ``renew_within`` of it is left, so an attempt
    shorter than that (most of them) costs no renewal at all, and a long one a write every
    ``ttl - renew_within`` seconds; a reported one is handed over at the same point, by then
    usually recorded by the shard (the statement then writes nothing).
    """

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
        # Three heartbeats of slack (or half the lease): a late beat still renews in time.
        self.renew_within = max(3 * interval_s, ttl_s / 2)
        # A count per id: a re-dispatched execution can be claimed again by this worker
        # while its first attempt here still winds down.
        self._held: dict[UUID, int] = {}
        # Released after their result was acked: handed to the shard before they run out.
        self._reported: set[UUID] = set()
        # When the lease this worker last set runs out (monotonic), held and reported ids.
        self._expires: dict[UUID, float] = {}
        # Heartbeats sent; tests wait on it instead of on time.
        self.beats = 0

    def hold(self, execution_id: UUID, *, since: float | None = None) -> None:
        """Hold the lease a claim just took (``ttl_s`` long), counted from ``since``: when
        the claim was sent (monotonic), not when its answer was read, which on a saturated
        event loop can be seconds later, past the renewal point of the lease in Postgres."""
        count = self._held.get(execution_id, 0)
        self._held[execution_id] = count + 1
        self._reported.discard(execution_id)
        if count == 0:
            start = time.monotonic() if since is None else since
            self._expires[execution_id] = start + self.ttl_s

    def release(self, execution_id: UUID, *, reported: bool = False) -> None:
        """Stop holding a lease. ``reported``: the attempt's result is acked in Kafka, so the
        lease is extended once more, to ``REPORTED_TTL_S``, for the shard to record it."""
        count = self._held.pop(execution_id, 0) - 1
        if count > 0:
            self._held[execution_id] = count
        elif reported:
            self._reported.add(execution_id)
        else:
            self._expires.pop(execution_id, None)

    def held(self) -> frozenset[UUID]:
        return frozenset(self._held)

    @property
    def idle(self) -> bool:
        return not self._held and not self._reported

    async def extend(self, *, due_only: bool = False) -> set[UUID]:
        """Extend the held leases and hand over the reported ones (with ``due_only``, only
        those with less than ``renew_within`` left); returns the ids extended.

        Sorted, and in bounded batches: each statement locks its rows in one order and
        briefly, so it cannot deadlock with another worker's or hold up the shard's writes.
        A reported id is forgotten once sent: the shard has usually recorded it by then, so
        the statement writes nothing for it (and a failed statement is retried next time).
        """
        now = time.monotonic()
        if due_only:
            due = {i for i, at in self._expires.items() if at - now < self.renew_within}
        else:
            due = set(self._held) | self._reported
        ttl = {i: self.ttl_s for i in due if i in self._held}
        ttl.update((i, REPORTED_TTL_S) for i in due & self._reported if i not in ttl)
        ids = sorted(ttl)
        extended: set[UUID] = set()
        for start in range(0, len(ids), MAX_BATCH):
            chunk = ids[start : start + MAX_BATCH]
            rows = await self._pool.fetch(
                QUERIES["extend_leases"], chunk, self._worker, [ttl[i] for i in chunk]
            )
            extended.update(row["execution_id"] for row in rows)
        for i in ids:
            if i in self._held:
                if i in extended:
                    self._expires[i] = now + self.ttl_s
            else:
                self._reported.discard(i)
                self._expires.pop(i, None)
        lost = set(ttl) & set(self._held) - extended
        if lost:
            # Recorded or reassigned meanwhile; the attempt itself goes on to its report.
            log.debug("leases no longer ours: %s", sorted(lost))
        self.beats += 1
        return extended

    async def run(self) -> None:
        """Extend leases every ``interval_s`` until cancelled; a failure waits for the next."""
        while True:
            await asyncio.sleep(self.interval_s)
            if self.idle:
                continue
            try:
                await self.extend(due_only=True)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning(
                    "extending %d leases failed: %s", len(self._held) + len(self._reported), exc
                )

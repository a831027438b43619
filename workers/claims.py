"""The worker's only write to Postgres: claiming queued executions before they run.

A claim is a compare-and-set on the execution's status, so of all deliveries of one
execution (a redelivery after a crash or a rebalance, a duplicate due event) exactly one
starts it, and a cancel that landed before the claim (a second before the instant) wins
over the start.

Claims are made a second ahead of the instant (workers.execution.CLAIM_AHEAD_S), so a claim
may wait a little to share its statement: the first claim asked for opens a batch that
leaves ``COALESCE_S`` later (at once when it is full, or a claim is urgent), with those asked
for meanwhile; at most ``STATEMENTS`` are in flight. Claims asked for while every statement
is in flight open the next batch, which waits its ``COALESCE_S`` too: sending them as soon as
a statement returned made a steady stream cost one statement per round trip (130 a second
of four claims each at 500 jobs/s), not one per ``COALESCE_S``. A steady 500 jobs/s then
costs 20 statements a second, not 500, and a burst's claims (10,000 due at one instant: ten
statements of 1,000) go two at a time, leaving Postgres cores for the shard's writes. One
statement per execution would make the commit rate of Postgres the worker's ceiling.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from core.backoff import DEFAULT_BACKOFF, Backoff
from core.db import is_unavailable
from core.queries import QUERIES
from workers.leases import LEASE_TTL_S

log = logging.getLogger(__name__)

MAX_BATCH = 1000
STATEMENTS = 2
COALESCE_S = 0.05


@dataclass(frozen=True)
class Claim:
    started_at: datetime
    lease_until: datetime
    # When the statement was sent (monotonic): the lease runs from no earlier than this. A
    # loaded worker may read the answer seconds later; counting the lease from then would
    # renew it after Postgres had let it lapse.
    asked_at: float


async def claim_batch(
    pool: asyncpg.Pool, worker: str, requests: Sequence[tuple[UUID, float]], events: bool = False
) -> dict[UUID, Claim]:
    """Claim the queued ones among ``(execution_id, lease_s)``; one statement, one commit.

    With ``events`` (KJS_EVENTS=on) the statement also writes each claimed execution's
    'execution.started' event to the outbox: the claim is the queued -> running change, and
    the worker its owner, so the event commits with it (the shard's relay publishes it).
    """
    query = QUERIES["claim_executions_with_events"] if events else QUERIES["claim_executions"]
    asked_at = time.monotonic()
    rows = await pool.fetch(query, [r[0] for r in requests], [r[1] for r in requests], worker)
    return {
        row["execution_id"]: Claim(
            started_at=row["started_at"], lease_until=row["lease_until"], asked_at=asked_at
        )
        for row in rows
    }


class Claimer:
    """One worker's claims, batched, and retried while Postgres is unreachable."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        worker: str,
        *,
        lease_s: float = LEASE_TTL_S,
        max_batch: int = MAX_BATCH,
        coalesce_s: float = COALESCE_S,
        backoff: Backoff = DEFAULT_BACKOFF,
        events: bool = False,
    ) -> None:
        self._pool = pool
        # KJS_EVENTS=on: claims write their 'execution.started' events (claim_batch).
        self._events = events
        self._worker = worker
        # The first lease; the worker's LeaseKeeper extends it while the attempt runs.
        self._lease_s = lease_s
        self._max_batch = max_batch
        self._coalesce_s = coalesce_s
        # Set when a waiting claim cannot wait for the batch to fill (or it is full).
        self._hurry = asyncio.Event()
        self._backoff = backoff
        self._waiting: dict[UUID, tuple[float, asyncio.Future[Claim | None]]] = {}
        self._flushers: set[asyncio.Task[None]] = set()
        # Flushers gathering a batch (not in a statement): a claim needs one, not a new one.
        self._gathering = 0

    async def claim(self, execution_id: UUID, *, urgent: bool = True) -> Claim | None:
        """Claim a queued execution; ``None`` if it is not queued (someone started, finished
        or cancelled it), which means: do not run it. Only a claim that is not ``urgent``
        (its instant is further than ``COALESCE_S`` away) waits to share a statement.

        A failing claim is retried with capped backoff, and the record stays uncommitted
        meanwhile: an outage delays the execution but never drops it. An error that is not
        an outage is retried too, louder: the statement's only inputs are an id and a
        number, so such an error is the store's (schema, permissions), not the record's,
        and dead-lettering would throw away every due event until someone fixes it.
        """
        failures = 0
        while True:
            try:
                return await self._claim_once(execution_id, self._lease_s, urgent)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                if is_unavailable(exc):
                    log.warning(
                        "claim of %s failed, Postgres unavailable (%s); retrying in %.2f s",
                        execution_id,
                        exc,
                        delay,
                    )
                else:
                    log.error(
                        "claim of %s failed (%s: %s); is the schema migrated? retrying in %.2f s",
                        execution_id,
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                await asyncio.sleep(delay)

    async def _claim_once(self, execution_id: UUID, lease_s: float, urgent: bool) -> Claim | None:
        if execution_id in self._waiting:
            # Two deliveries of one execution in one batch: the first one claims it.
            return None
        future: asyncio.Future[Claim | None] = asyncio.get_running_loop().create_future()
        entry = (lease_s, future)
        self._waiting[execution_id] = entry
        if urgent or len(self._waiting) >= self._max_batch:
            self._hurry.set()
        if not self._gathering and len(self._flushers) < STATEMENTS:
            flusher = asyncio.create_task(self._flush(), name="kjs-claims")
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)  # also one cancelled unstarted
        try:
            return await future
        except asyncio.CancelledError:
            # Not sent yet: take it back, so a cancelled record is not claimed unrun.
            if self._waiting.get(execution_id) is entry:
                del self._waiting[execution_id]
            raise

    async def _flush(self) -> None:
        """Gather a batch for ``coalesce_s`` (less when hurried or full), send it as one
        statement, and go on while claims wait that no other flusher is gathering."""
        try:
            await self._flush_while_waiting()
        finally:
            # At once, not in a done callback: a claim asked for meanwhile must not count
            # this flusher as one that will still send it.
            self._flushers.discard(asyncio.current_task())

    async def _flush_while_waiting(self) -> None:
        while self._waiting:
            self._gathering += 1
            try:
                if len(self._waiting) < self._max_batch:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._hurry.wait(), self._coalesce_s)
            finally:
                self._gathering -= 1
            self._hurry.clear()
            ids = list(itertools.islice(self._waiting, self._max_batch))
            batch = {i: self._waiting.pop(i) for i in ids}
            if len(self._waiting) >= self._max_batch:
                self._hurry.set()  # the next batch is full already
            await self._send(batch)
            if self._gathering:
                return  # another flusher gathers what came meanwhile

    async def _send(self, batch: dict[UUID, tuple[float, asyncio.Future[Claim | None]]]) -> None:
        if not batch:
            return
        try:
            claims = await claim_batch(
                self._pool,
                self._worker,
                [(i, lease) for i, (lease, _) in batch.items()],
                self._events,
            )
        except Exception as exc:
            for _, future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        log.debug("claimed %d of %d executions", len(claims), len(batch))
        for execution_id, (_, future) in batch.items():
            if not future.done():
                future.set_result(claims.get(execution_id))

"""Fair sharing of a lane: a shard's due events go out interleaved by tenant, and paced.

Without it a lane is first come, first served: 5,000 occurrences one tenant scheduled for
09:00 go into the due topic ahead of every other tenant's 09:00 jobs, and those wait for the
flood to drain. With it (``KJS_FAIR_DISPATCH``, on by default):

1. **Interleaving.** Fired executions wait in the shard's memory in one queue per lane and
   tenant (their rows are written and committed already: the outbox). The sender takes them
   round-robin by tenant: one of each tenant with a backlog, in turn, each tenant's own in the
   order they were fired (:class:`FairQueue`).
2. **Pacing.** Per lane, at most ``dispatch_window`` of the shard's executions are "ahead of
   the workers": sent, and neither finished (its result recorded) nor due for longer than
   ``dispatch_window_s`` (an execution sent a lead before its instant waits at a worker until
   then, so it counts from its instant). The rest wait in the queue, where a tenant that
   arrives later still takes its turn. So the workers never hold more than about a window of
   a flood ahead of another tenant's work, whichever shard that tenant is on. What a worker
   holds for one instant starts round-robin by tenant (``workers/timing.py``), so within an
   instant the flood is not ahead at all; the window (10,000 by default, what one worker
   holds ahead) bounds memory and how far a flood due earlier gets ahead.

The bound: an execution that is the k-th of its tenant's backlog in a lane where n tenants
have a backlog is sent within the next k x n sends of that lane; with the window full, sends
happen as results come back (or as entries age out of the window), so it is with the workers
after at most about (k x n + window) executions of the lane, whatever other tenants have queued.

The age limit keeps slow jobs from shrinking the window to nothing: with the window at least
the workers' total concurrency, executions longer than ``dispatch_window_s`` finish no faster
than the window lets new ones out, so pacing never lowers the throughput of long jobs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from uuid import UUID

from core.clock import SYSTEM_CLOCK, Clock
from scheduler.firing import Dispatcher
from scheduler.model import Occurrence

log = logging.getLogger(__name__)

# The most due events sent in one dispatch (one produce-and-ack round trip).
SEND_BATCH = 500


class FairQueue:
    """One lane's waiting executions, by tenant; taken round-robin. Pure."""

    def __init__(self) -> None:
        self._tenants: OrderedDict[str, deque[Occurrence]] = OrderedDict()
        self._ids: set[UUID] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._ids

    def put(self, occurrence: Occurrence) -> None:
        """Queue one execution behind its tenant's others; a repeat is ignored. A tenant
        with nothing queued joins the end of the rotation."""
        if occurrence.execution_id in self._ids:
            return
        self._ids.add(occurrence.execution_id)
        self._tenants.setdefault(occurrence.user_id, deque()).append(occurrence)

    def tenants(self) -> list[str]:
        return list(self._tenants)

    def take_from(self, user: str, n: int) -> list[Occurrence]:
        """Up to ``n`` of one tenant's executions, in its order (its turn is kept)."""
        queue = self._tenants.get(user)
        out: list[Occurrence] = []
        while queue and len(out) < n:
            occ = queue.popleft()
            self._ids.discard(occ.execution_id)
            out.append(occ)
        if queue is not None and not queue:
            del self._tenants[user]
        return out

    def take(self, n: int) -> list[Occurrence]:
        """Up to ``n`` executions, one per tenant in turn (the tenant served last goes to
        the end of the rotation, so the next take goes on where this one stopped)."""
        out: list[Occurrence] = []
        while self._tenants and len(out) < n:
            user, queue = next(iter(self._tenants.items()))
            occ = queue.popleft()
            self._ids.discard(occ.execution_id)
            out.append(occ)
            if queue:
                self._tenants.move_to_end(user)
            else:
                del self._tenants[user]
        return out


class FairDispatch:
    """A shard's sender: executions go out of the :class:`FairQueue` of their lane, while
    the lane has room in its window (see the module docstring)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        shard: int,
        epoch: int,
        window: int,
        window_s: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._dispatcher = dispatcher
        # The timer's clock: how far ahead of its instant an execution is sent.
        self._clock = clock
        self._shard = shard
        self._epoch = epoch
        self._window = window
        self._window_s = window_s
        self._queues: dict[str, FairQueue] = {}
        # Per lane: the executions sent and not finished, with when they leave the window
        # if no result comes (monotonic): dispatch_window_s after their instant; and their
        # tenant, counted per tenant too (for the tenant's share of a full window).
        self._ahead: dict[str, dict[UUID, tuple[float, str]]] = {}
        self._ahead_of: dict[str, dict[str, int]] = {}
        self._wake = asyncio.Event()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def __contains__(self, execution_id: object) -> bool:
        return any(execution_id in q for q in self._queues.values())

    def put(self, occurrences: Iterable[Occurrence]) -> None:
        for occ in occurrences:
            self._queues.setdefault(occ.lane, FairQueue()).put(occ)
        self._wake.set()

    def finished(self, execution_ids: Iterable[UUID]) -> None:
        """Results were recorded: room in the window again."""
        freed = False
        for lane in self._ahead:
            for execution_id in execution_ids:
                freed |= self._leave(lane, execution_id)
        if freed:
            self._wake.set()

    def _leave(self, lane: str, execution_id: UUID) -> bool:
        entry = self._ahead[lane].pop(execution_id, None)
        if entry is None:
            return False
        counts = self._ahead_of[lane]
        counts[entry[1]] -= 1
        if not counts[entry[1]]:
            del counts[entry[1]]
        return True

    def _room(self, lane: str, now: float) -> int:
        ahead = self._ahead.setdefault(lane, {})
        self._ahead_of.setdefault(lane, {})
        if len(ahead) >= self._window:  # full: some may have aged out
            for execution_id in [i for i, (until, _) in ahead.items() if until <= now]:
                self._leave(lane, execution_id)
        return self._window - len(ahead)

    def _next_batch(self) -> list[Occurrence]:
        """Round-robin while the lane's window has room; with it full, a tenant below its
        share of the window (window / tenants sending or waiting) still sends up to it, so
        one that arrives behind a flood does not wait for the flood's results."""
        now = time.monotonic()
        batch: list[Occurrence] = []
        for lane, queue in self._queues.items():
            if not queue:
                continue
            room = self._room(lane, now)
            taken = queue.take(min(room, SEND_BATCH - len(batch))) if room > 0 else []
            counts = Counter(self._ahead_of[lane])
            counts.update(o.user_id for o in taken)
            share = self._window // max(1, len(set(counts) | set(queue.tenants())))
            for user in queue.tenants():
                below = min(share - counts[user], SEND_BATCH - len(batch) - len(taken))
                if below > 0:
                    taken += queue.take_from(user, below)
            batch += taken
        return batch

    def _until_room(self) -> float:
        """Seconds until the first entry of a full lane with waiting work ages out."""
        ends = [
            min(until for until, _ in self._ahead[lane].values())
            for lane, queue in self._queues.items()
            if queue and self._ahead.get(lane)
        ]
        if not ends:
            return self._window_s
        return max(0.001, min(ends) - time.monotonic())

    async def run(self) -> None:
        """Send until cancelled. A dispatch that fails leaves its rows in the outbox, which
        the timer's refresh puts back here."""
        while True:
            batch = self._next_batch()
            if not batch:
                self._wake.clear()
                if self.waiting:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._until_room())
                    except TimeoutError:
                        pass
                else:
                    await self._wake.wait()
                continue
            try:
                await self._dispatcher.dispatch(self._shard, self._epoch, batch)
            except Exception as exc:
                log.warning(
                    "shard %s: dispatch failed (%s); the outbox will re-send", self._shard, exc
                )
                continue
            sent, wall = time.monotonic(), self._clock()
            for occ in batch:
                due_in = ((occ.due_at or occ.scheduled_for) - wall).total_seconds()
                until = sent + max(0.0, due_in) + self._window_s
                if occ.execution_id not in self._ahead[occ.lane]:
                    counts = self._ahead_of[occ.lane]
                    counts[occ.user_id] = counts.get(occ.user_id, 0) + 1
                self._ahead[occ.lane][occ.execution_id] = (until, occ.user_id)

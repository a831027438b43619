"""Which shards this scheduler instance owns, with their epochs and timers.

A shard is a partition number of ``jobs.commands`` (and of the co-partitioned
``jobs.results``). Kafka's group assignment decides the owner; Postgres's epoch proves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from core.clock import SYSTEM_CLOCK, Clock
from core.settings import SchedulerSettings
from scheduler.daily_budget import DailyBudget
from scheduler.firing import Dispatcher
from scheduler.metrics import DUE_NOT_FIRED, SHARDS_OWNED, TIMER_HELD
from scheduler.store.shards import Fenced, reclaim_resized_shard, resized_shards, take_shard
from scheduler.timer import ShardTimer

log = logging.getLogger(__name__)
# How often an instance looks for shards of its that a resize fenced: a shard with nothing to
# write would otherwise not notice until the next rebalance.
RESIZE_POLL_S = 1.0


class NotOwned(RuntimeError):
    pass


@dataclass
class OwnedShard:
    timer: ShardTimer
    task: asyncio.Task[None]
    # The shard's event relay (scheduler.events), with KJS_EVENTS=on.
    relay: asyncio.Task[None] | None = None

    @property
    def epoch(self) -> int:
        return self.timer.epoch


class Shards:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dispatcher: Dispatcher,
        settings: SchedulerSettings,
        owner: str,
        budget: DailyBudget | None = None,
        clock: Clock = SYSTEM_CLOCK,
        relay: Callable[[int, int], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self._pool = pool
        # Publishes a shard's events, given (shard, epoch); None with KJS_EVENTS=off.
        self._relay = relay
        self._clock = clock
        self._budget = budget
        self._dispatcher = dispatcher
        self._settings = settings
        self._owner = owner
        self._owned: dict[int, OwnedShard] = {}
        self._changed = asyncio.Condition()
        self._reclaiming = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        # The partition count tenants are routed by, as the shard rows said at this instance's
        # latest claim (a resize writes it); None until a resize: the configured count.
        self.partitions: int | None = None
        # Readiness: a first assignment happened (an instance may own no shard at all when
        # there are more instances than partitions, and still be ready).
        self.assigned_once = False

    @property
    def owned(self) -> dict[int, OwnedShard]:
        return self._owned

    async def assign(self, shards: Iterable[int]) -> None:
        """Make the owned set equal to ``shards`` (faust passes the whole new assignment).

        1. Stop the timers of shards no longer assigned.
        2. For each newly assigned shard, bump its epoch in Postgres. That waits for the
           previous owner's in-flight write, and fences all its later ones.
        3. Start the shard's timer with that epoch; it first re-sends the outbox.
        """
        wanted = set(shards)
        await self.revoke(set(self._owned) - wanted)
        for shard in sorted(wanted - set(self._owned)):
            claim = await take_shard(self._pool, shard, self._owner)
            self._learn(claim.partitions)
            timer = self._timer(shard, claim.epoch)
            task = asyncio.create_task(self._run_timer(timer), name=f"kjs-shard-{shard}")
            relay: asyncio.Task[None] | None = None
            if self._relay is not None:
                relay = asyncio.create_task(
                    self._relay(shard, claim.epoch), name=f"kjs-events-{shard}"
                )
            self._owned[shard] = OwnedShard(timer, task, relay)
            log.info("shard %s assigned (epoch %s)", shard, claim.epoch, extra={"shard": shard})
        SHARDS_OWNED.set(len(self._owned))
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_resizes(), name="kjs-resize-watch")
        self.assigned_once = True
        async with self._changed:
            self._changed.notify_all()

    def routed_by(self, configured: int) -> int:
        """The partition count that places a tenant's records: the one a resize set, else the
        configured one."""
        return self.partitions or configured

    def _learn(self, partitions: int | None) -> None:
        # Counts only grow (Kafka cannot remove partitions), so the largest one seen is the
        # latest, whatever order concurrent claims finish in.
        if partitions is not None:
            self.partitions = max(self.partitions or 0, partitions)

    def _timer(self, shard: int, epoch: int) -> ShardTimer:
        return ShardTimer(
            shard, epoch, self._pool, self._dispatcher, self._settings, self._budget, self._clock
        )

    async def reclaim(self, fenced: Fenced) -> bool:
        """After ``fenced``: whether this instance holds the shard again, so that the fenced
        work may be retried (with the count a resize set, ``partitions``).

        A resize (scheduler/resize.py) bumps every epoch in the name "kjs resize" without a
        Kafka rebalance, so the instance that Kafka assigns the shard to takes it back here:
        1. Another task of this instance took it back already (the epoch it holds moved on):
           yes.
        2. Otherwise bump the epoch again, only if the row still names the resize; a shard
           that another instance claimed stays fenced (no).
        3. Restart the shard's timer with the new epoch (it re-reads the moved jobs and
           re-sends the outbox), and its events relay; the fenced tasks end.
        """
        async with self._reclaiming:
            owned = self._owned.get(fenced.shard)
            if owned is None:
                return False
            if owned.epoch != fenced.held:
                return True
            claim = await reclaim_resized_shard(self._pool, fenced.shard, self._owner)
            if claim is None:
                return False
            self._learn(claim.partitions)
            stale = owned.task
            owned.timer = self._timer(fenced.shard, claim.epoch)
            owned.task = asyncio.create_task(
                self._run_timer(owned.timer), name=f"kjs-shard-{fenced.shard}"
            )
            if stale is not asyncio.current_task():
                stale.cancel()
            if self._relay is not None:
                # The events relay held the old epoch too: it stopped, fenced, or soon will.
                if owned.relay is not None and owned.relay is not asyncio.current_task():
                    owned.relay.cancel()
                owned.relay = asyncio.create_task(
                    self._relay(fenced.shard, claim.epoch), name=f"kjs-events-{fenced.shard}"
                )
            log.info(
                "shard %s taken back after a resize to %s partitions (epoch %s)",
                fenced.shard,
                claim.partitions,
                claim.epoch,
                extra={"shard": fenced.shard},
            )
            return True

    async def revoke(self, shards: Iterable[int]) -> None:
        for shard in list(shards):
            owned = self._owned.pop(shard, None)
            if owned is None:
                continue
            for task in (owned.task, owned.relay):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            log.info("shard %s revoked (epoch %s)", shard, owned.epoch, extra={"shard": shard})
            for gauge in (TIMER_HELD, DUE_NOT_FIRED):
                with contextlib.suppress(KeyError):
                    gauge.remove(str(shard))
        SHARDS_OWNED.set(len(self._owned))

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self.revoke(list(self._owned))

    async def _watch_resizes(self) -> None:
        """Every ``RESIZE_POLL_S``, take back the owned shards a resize fenced."""
        while True:
            await asyncio.sleep(RESIZE_POLL_S)
            held = {shard: owned.epoch for shard, owned in self._owned.items()}
            if not held:
                continue
            try:
                for shard in await resized_shards(self._pool, sorted(held)):
                    await self.reclaim(Fenced(shard, held[shard], None))
            except Exception:  # Postgres down: the next look, or the shard's writes, retry
                log.warning("looking for resized shards failed", exc_info=True)

    async def get(self, shard: int, timeout_s: float = 30.0) -> OwnedShard:
        """The owned shard, waiting a little for an assignment still in progress."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: shard in self._owned), timeout_s
                )
            except TimeoutError as exc:
                raise NotOwned(f"shard {shard} is not owned by this instance") from exc
        return self._owned[shard]

    async def _run_timer(self, timer: ShardTimer) -> None:
        """Keep the shard's timer running: a crash is logged and the timer restarted."""
        while True:
            try:
                await timer.run()
                return
            except Fenced as exc:
                # Logged either way: a refused write is what an operator (and the fault
                # suite) looks for after a paused or partitioned instance wakes.
                log.warning("shard %s timer fenced: %s", timer.shard, exc)
                await self.reclaim(exc)  # a resize fenced it: a new timer runs, new epoch
                return
            except Exception:
                log.exception("shard %s timer crashed; restarting in 1s", timer.shard)
                await asyncio.sleep(1.0)

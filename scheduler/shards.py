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
from scheduler.store.shards import Fenced, claim_shard
from scheduler.timer import ShardTimer

log = logging.getLogger(__name__)


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
            epoch = await claim_shard(self._pool, shard, self._owner)
            timer = ShardTimer(
                shard,
                epoch,
                self._pool,
                self._dispatcher,
                self._settings,
                self._budget,
                self._clock,
            )
            task = asyncio.create_task(self._run_timer(timer), name=f"kjs-shard-{shard}")
            relay: asyncio.Task[None] | None = None
            if self._relay is not None:
                relay = asyncio.create_task(self._relay(shard, epoch), name=f"kjs-events-{shard}")
            self._owned[shard] = OwnedShard(timer, task, relay)
            log.info("shard %s assigned (epoch %s)", shard, epoch, extra={"shard": shard})
        SHARDS_OWNED.set(len(self._owned))
        self.assigned_once = True
        async with self._changed:
            self._changed.notify_all()

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
        await self.revoke(list(self._owned))

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
                log.warning("shard %s timer stopped: %s", timer.shard, exc)
                return
            except Exception:
                log.exception("shard %s timer crashed; restarting in 1s", timer.shard)
                await asyncio.sleep(1.0)

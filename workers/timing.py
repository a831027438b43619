"""Holding a due event until its instant.

The scheduler sends a due event a short lead before ``scheduled_for``, so that the Kafka and
poll hops are paid before the instant instead of after it. The worker then waits on the wall
clock, since ``scheduled_for`` is a wall-clock time the scheduler computed on its own clock.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from core.clock import utcnow


class Instants:
    """Holds records until their instants, one timer per instant, not per record.

    Everything held for one instant wakes in the order it started holding (a future's
    callbacks run in the order they were added). A burst's 10,000 executions due together
    then take the worker's slots in the order the shard sent them, which is the order fair
    sharing chose (scheduler/fair_dispatch.py); 10,000 timers of one deadline would wake in
    the heap's order, which is none. One timer per instant is also 10,000 fewer heap entries.
    """

    def __init__(self) -> None:
        self._gates: dict[datetime, asyncio.Future[None]] = {}

    async def hold_until(self, instant: datetime) -> None:
        """Return at ``instant`` or just after, never before.

        asyncio sleeps on the monotonic clock, which may drift from the wall clock over a
        long wait, and a timer may fire within the clock's resolution of its deadline. The
        gate itself re-arms until the wall clock has passed the instant (``_open``), so every
        holder wakes once, together, in holding order. (Re-checking in each holder instead
        sent the first holder, woken a hair early, to the back of the line.)
        """
        remaining = (instant - utcnow()).total_seconds()
        if remaining <= 0:
            return
        gate = self._gates.get(instant)
        if gate is None:
            loop = asyncio.get_running_loop()
            gate = self._gates[instant] = loop.create_future()
            loop.call_later(remaining, self._open, instant, gate)
        # Shielded: one holder cancelled (shutdown) must not cancel the others' gate.
        await asyncio.shield(gate)

    def _open(self, instant: datetime, gate: asyncio.Future[None]) -> None:
        remaining = (instant - utcnow()).total_seconds()
        if remaining > 0:  # the monotonic timer ran ahead of the wall clock: wait the rest
            asyncio.get_running_loop().call_later(remaining, self._open, instant, gate)
            return
        if self._gates.get(instant) is gate:
            del self._gates[instant]
        if not gate.done():
            gate.set_result(None)

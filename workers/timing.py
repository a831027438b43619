"""Holding a due event until its instant.

The scheduler sends a due event a short lead before ``scheduled_for``, so that the Kafka and
poll hops are paid before the instant instead of after it. The worker then waits on the wall
clock, since ``scheduled_for`` is a wall-clock time the scheduler computed on its own clock.
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import datetime

from core.clock import utcnow

# One instant's holders: per tenant, in the order they started holding.
_Gate = dict[str, deque[asyncio.Future[None]]]


class Instants:
    """Holds records until their instants, one timer per instant, not per record.

    What is held for one instant wakes **round-robin by tenant**: one holder of each tenant,
    in the order the tenants first held, then the next of each; each tenant's own in the
    order they started holding. The woken take the worker's slots in that order. So a
    tenant with 20 runs due at 09:00 starts them among the first of that instant, however
    many thousand runs another tenant has due then too, and however the shards' sends of
    the two interleaved; the shard's fair dispatch (scheduler/fair_dispatch.py) bounds only
    what is sent ahead, and its window is large enough for a burst to be sent whole.

    A timer per record would be 10,000 heap entries for a burst, waking in the heap's order.
    """

    def __init__(self) -> None:
        self._gates: dict[datetime, _Gate] = {}

    async def hold_until(self, instant: datetime, tenant: str = "") -> None:
        """Return at ``instant`` or just after, never before.

        asyncio sleeps on the monotonic clock, which may drift from the wall clock over a
        long wait, and a timer may fire within the clock's resolution of its deadline. The
        gate itself re-arms until the wall clock has passed the instant (``_open``), so every
        holder wakes once, in the gate's order. (Re-checking in each holder instead sent the
        first holder, woken a hair early, to the back of the line.)
        """
        remaining = (instant - utcnow()).total_seconds()
        if remaining <= 0:
            return
        loop = asyncio.get_running_loop()
        gate = self._gates.get(instant)
        if gate is None:
            gate = self._gates[instant] = {}
            loop.call_later(remaining, self._open, instant, gate)
        # A future per holder: a cancelled holder (shutdown) cancels only its own.
        woken: asyncio.Future[None] = loop.create_future()
        line = gate.get(tenant)
        if line is None:
            line = gate[tenant] = deque()
        line.append(woken)
        await woken

    def _open(self, instant: datetime, gate: _Gate) -> None:
        remaining = (instant - utcnow()).total_seconds()
        if remaining > 0:  # the monotonic timer ran ahead of the wall clock: wait the rest
            asyncio.get_running_loop().call_later(remaining, self._open, instant, gate)
            return
        if self._gates.get(instant) is gate:
            del self._gates[instant]
        lines = list(gate.values())
        while lines:
            for line in lines:
                woken = line.popleft()
                if not woken.done():  # not cancelled
                    woken.set_result(None)
            lines = [line for line in lines if line]

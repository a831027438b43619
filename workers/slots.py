"""The worker's slots: how many target calls run at once, and who is waiting for one.

A run past its instant that waits for a slot is the worker's backlog. While there is one,
reporting finished runs waits (``quiet``), at most ``REPORT_DEFER_S``: in a burst, building,
sending and acknowledging 10,000 results (and the shard's writing them) competed for the
cores with the starts still waiting, which are the promise; a result only has to reach the
shard, whose record of it is not in a hurry (the worker keeps the lease meanwhile,
workers.leases). At a steady rate within capacity nobody waits for a slot, and reports go
at once.
"""

from __future__ import annotations

import asyncio

# The longest a finished run's report waits for the backlog to clear: a worker overloaded
# for longer still reports every result, this much later. Well inside the lease (7 s).
REPORT_DEFER_S = 2.0


class Slots:
    """A semaphore of ``concurrency`` slots that counts its waiters."""

    def __init__(self, concurrency: int) -> None:
        self._free = asyncio.Semaphore(concurrency)
        self._waiting = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    async def acquire(self) -> None:
        self._waiting += 1
        self._quiet.clear()
        try:
            await self._free.acquire()
        finally:
            self._waiting -= 1
            if not self._waiting:
                self._quiet.set()

    def release(self) -> None:
        self._free.release()

    @property
    def waiting(self) -> int:
        """Runs past their instant waiting for a slot."""
        return self._waiting

    async def quiet(self, within: float = REPORT_DEFER_S) -> None:
        """Return once no run waits for a slot, or after ``within`` seconds."""
        if self._waiting:
            try:
                await asyncio.wait_for(self._quiet.wait(), within)
            except TimeoutError:
                pass

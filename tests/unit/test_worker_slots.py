"""The worker's slots: a bounded semaphore that knows whether runs wait for a slot."""

from __future__ import annotations

import asyncio

from tests.support.waiting import eventually
from workers.slots import Slots


async def taken_with_one_waiting() -> tuple[Slots, asyncio.Task[None]]:
    """One slot, taken, and a run waiting for it."""
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())

    async def counted() -> bool | None:
        return True if slots.waiting == 1 else None

    await eventually(counted, what="the waiting run counted")
    return slots, waiter


async def test_quiet_returns_at_once_when_no_run_waits() -> None:
    slots = Slots(1)
    await slots.acquire()  # the slot is taken, but nobody waits for it
    await asyncio.wait_for(slots.quiet(within=60), timeout=5)
    assert slots.waiting == 0


async def test_quiet_returns_only_once_every_waiting_run_has_its_slot() -> None:
    slots, waiter = await taken_with_one_waiting()
    asyncio.get_running_loop().call_soon(slots.release)  # after quiet() starts waiting
    await slots.quiet(within=60)
    assert waiter.done() and slots.waiting == 0


async def test_quiet_gives_up_after_its_limit_while_runs_still_wait() -> None:
    slots, waiter = await taken_with_one_waiting()
    await asyncio.wait_for(slots.quiet(within=0.01), timeout=5)
    assert slots.waiting == 1 and not waiter.done()  # an overloaded worker still reports
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)


async def test_a_cancelled_waiter_stops_counting() -> None:
    slots, waiter = await taken_with_one_waiting()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert slots.waiting == 0
    await asyncio.wait_for(slots.quiet(within=60), timeout=5)

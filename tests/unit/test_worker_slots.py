"""The worker's slots: a bounded semaphore that knows whether runs wait for a slot."""

from __future__ import annotations

import asyncio

from workers.slots import Slots


async def test_quiet_returns_at_once_when_no_run_waits() -> None:
    slots = Slots(1)
    await slots.acquire()  # the slot is taken, but nobody waits for it
    await asyncio.wait_for(slots.quiet(within=60), timeout=5)
    assert slots.waiting == 0


async def test_quiet_waits_until_every_waiting_run_has_its_slot() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    assert slots.waiting == 1
    quiet = asyncio.create_task(slots.quiet(within=60))
    await asyncio.sleep(0.05)
    assert not quiet.done()  # a run due now still waits: reports hold back
    slots.release()
    await asyncio.wait_for(asyncio.gather(waiter, quiet), timeout=5)
    assert slots.waiting == 0


async def test_quiet_gives_up_after_its_limit_while_runs_still_wait() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    await asyncio.wait_for(slots.quiet(within=0.01), timeout=5)
    assert slots.waiting == 1 and not waiter.done()  # an overloaded worker still reports
    waiter.cancel()


async def test_a_cancelled_waiter_stops_counting() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert slots.waiting == 0
    await asyncio.wait_for(slots.quiet(within=60), timeout=5)

"""Holding a due event until its instant.

The scheduler sends a due event a short lead before ``scheduled_for``, so that the Kafka and
poll hops are paid before the instant instead of after it. The worker then waits on the wall
clock, since ``scheduled_for`` is a wall-clock time the scheduler computed on its own clock.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from core.clock import utcnow


async def hold_until(instant: datetime) -> None:
    """Return at ``instant`` or just after, never before.

    asyncio sleeps on the monotonic clock, which may drift from the wall clock over a long
    wait, and a timer may fire within the clock's resolution of its deadline; so sleep
    again until the wall clock has really passed the instant.
    """
    # Waiting for a time, not for an event: there is nothing to signal (hence the noqa).
    while (remaining := (instant - utcnow()).total_seconds()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(remaining)

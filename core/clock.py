"""The one source of "now" in Python code: ``utcnow()``, a timezone-aware UTC datetime.

Everything that asks the time asks it here, so that a test can tell what time it is by
passing a ``Clock`` where a component takes one, and so that the wall clock is read one way
across processes (the scheduler computes ``scheduled_for`` on its clock and the worker waits
for it on its own).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


def utcnow() -> datetime:
    return datetime.now(UTC)


class Clock(Protocol):
    def __call__(self) -> datetime:
        """Now, timezone-aware, in UTC."""
        ...


SYSTEM_CLOCK: Clock = utcnow

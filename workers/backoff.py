"""Capped exponential backoff for waiting out an outage of Postgres or the broker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delays that start small (a blip costs little lateness) and are capped (a long outage
    is noticed within ``max_s`` of its end)."""

    initial_s: float = 0.05
    max_s: float = 5.0

    def delay(self, failures: int) -> float:
        return float(min(self.max_s, self.initial_s * 2 ** max(0, failures - 1)))


DEFAULT_BACKOFF = Backoff()

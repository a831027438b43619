"""Kept for the files that import ``tests.waiting``: the helper is ``tests.support.waiting``."""

from __future__ import annotations

from tests.support.waiting import eventually

__all__ = ["eventually"]

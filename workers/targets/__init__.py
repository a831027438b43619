"""The registry from a target's ``type`` to the runner that executes it.

The worker core knows no target type: adding one is writing a runner and registering it.
A type with no runner on this worker gives a failed outcome rather than an error, so a job
the worker cannot run is still reported, and its partition goes on.
"""

from __future__ import annotations

import logging

from schemas.v1.targets import Target
from workers.targets.base import Attempt, Outcome, TargetRunner

log = logging.getLogger(__name__)


class TargetRegistry:
    def __init__(self) -> None:
        self._runners: dict[str, TargetRunner] = {}

    def register(self, target_type: str, runner: TargetRunner) -> None:
        if target_type in self._runners:
            raise ValueError(f"a runner for target type {target_type!r} is already registered")
        self._runners[target_type] = runner

    def types(self) -> list[str]:
        return sorted(self._runners)

    async def run(self, target: Target, attempt: Attempt) -> Outcome:
        runner = self._runners.get(target.type)
        if runner is None:
            return Outcome.failure(
                f"target type {target.type!r} is not enabled on this worker", retryable=False
            )
        return await runner(target, attempt)


__all__ = ["Attempt", "Outcome", "TargetRegistry", "TargetRunner"]

"""The worker's last line of defence: no target runs that the operator's policy forbids.

The API and the scheduler check the same rules (``schemas.v1.target_policy``) before a job is
accepted; the worker checks again just before running, because a job may have been accepted
before the operator tightened the policy, or through a path that did not check. A refusal is
a failed, not retryable outcome whose error names every rule broken.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from core.settings import TargetSettings
from schemas.v1.target_policy import Resolver, check_target, describe, resolve_executable
from schemas.v1.targets import Target
from workers.targets.base import Outcome


@dataclass(frozen=True)
class TargetGuard:
    policy: TargetSettings
    # kjs's own topics (``topics.catalog.catalog(kafka).all()``).
    reserved_topics: Collection[str]
    resolve: Resolver = resolve_executable

    def refusal(self, target: Target) -> Outcome | None:
        """The outcome to report instead of running ``target``; None if it may run."""
        violations = check_target(target, self.policy, self.reserved_topics, resolve=self.resolve)
        if not violations:
            return None
        return Outcome.failure(f"refused by policy: {describe(violations)}", retryable=False)

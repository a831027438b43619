"""A worker starts the runs due now before it reports finished ones (workers.slots).

The claimer, reporter and lease keeper are stand-ins: what is under test is the order in
which ``ExecutionService`` starts and reports, not Postgres or Kafka (the integration and
fault suites run those for real).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any, cast
from uuid import UUID

from core.clock import utcnow
from schemas.v1.events import ResultEvent
from schemas.v1.targets import Target
from tests.support.waiting import eventually
from tests.unit.test_worker_records import due_event
from workers.claims import Claim
from workers.execution import ExecutionService
from workers.slots import Slots
from workers.targets import Attempt, Outcome, TargetRegistry


class Claims:
    async def claim(self, execution_id: UUID, *, urgent: bool = True) -> Claim:
        now = utcnow()
        return Claim(now, now + timedelta(seconds=7), time.monotonic())


class Reports:
    def __init__(self) -> None:
        self.reported: list[UUID] = []

    async def result(self, result: ResultEvent, traceparent: str | None = None) -> None:
        self.reported.append(result.execution_id)


class Leases:
    def hold(self, execution_id: UUID, *, since: float | None = None) -> None:
        pass

    def release(self, execution_id: UUID, *, reported: bool = False) -> None:
        pass


class Allow:
    def refusal(self, target: Target) -> Outcome | None:
        return None


async def test_a_finished_run_is_reported_only_once_no_run_due_now_waits_for_a_slot() -> None:
    started: list[UUID] = []
    finish: dict[UUID, asyncio.Event] = {}

    async def runner(target: Any, attempt: Attempt) -> Outcome:
        started.append(attempt.execution_id)
        await finish[attempt.execution_id].wait()
        return Outcome(succeeded=True)

    registry = TargetRegistry()
    registry.register("kafka", runner)
    reports = Reports()
    slots = Slots(1)
    service = ExecutionService(
        claimer=cast(Any, Claims()),
        registry=registry,
        reporter=cast(Any, reports),
        guard=cast(Any, Allow()),
        leases=cast(Any, Leases()),
        worker_id="w-1",
        slots=slots,
    )
    first, second, third = events = [due_event() for _ in range(3)]  # due now
    for event in events:
        finish[event.execution_id] = asyncio.Event()
    tasks = [asyncio.create_task(service._execute(event)) for event in events]

    async def waiting(n: int) -> bool | None:
        return True if slots.waiting == n else None

    await eventually(lambda: waiting(2), what="one run in the slot, two waiting")
    assert started == [first.execution_id]

    finish[first.execution_id].set()
    # An undeferred report goes in the step that frees the slot, before the second starts.
    await eventually(lambda: waiting(1), what="the second run in the slot")
    assert started == [first.execution_id, second.execution_id]
    assert reports.reported == []  # the third still waits for its start

    finish[second.execution_id].set()

    async def both_reported() -> bool | None:
        return True if len(reports.reported) == 2 else None

    await eventually(both_reported, what="the first two reports, once nothing waits")
    assert started[-1] == third.execution_id
    assert set(reports.reported) == {first.execution_id, second.execution_id}

    finish[third.execution_id].set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    assert reports.reported[-1] == third.execution_id

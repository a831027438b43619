"""The interleaving and pacing rules of a lane's fair dispatch (scheduler.fair_dispatch)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import cast

from scheduler.fair_dispatch import FairDispatch, FairQueue
from scheduler.firing import Dispatcher
from scheduler.model import Occurrence
from tests.support.waiting import eventually

AT = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def occ(user: str) -> Occurrence:
    return Occurrence(uuid.uuid4(), uuid.uuid4(), user, 1, AT, "normal", {"type": "http"})


def users(taken: list[Occurrence]) -> str:
    return "".join(o.user_id for o in taken)


def test_tenants_are_taken_in_turn_each_in_its_own_order() -> None:
    q = FairQueue()
    flood = [occ("A") for _ in range(6)]
    few = [occ("B") for _ in range(2)]
    for o in [*flood, *few]:
        q.put(o)
    taken = q.take(100)
    assert users(taken) == "ABABAAAA"
    assert [o for o in taken if o.user_id == "A"] == flood
    assert [o for o in taken if o.user_id == "B"] == few
    assert len(q) == 0


def test_a_tenant_arriving_behind_a_flood_is_served_within_one_turn() -> None:
    """The bound: the k-th of a tenant's backlog goes out within k x n takes, n the tenants
    with a backlog, however much the others have queued."""
    q = FairQueue()
    for _ in range(5000):
        q.put(occ("A"))
    assert users(q.take(10)) == "A" * 10
    late = [occ("B") for _ in range(20)]
    for o in late:
        q.put(o)
    taken = q.take(40)
    assert [o for o in taken if o.user_id == "B"] == late
    assert users(taken) == "BA" * 20 or users(taken) == "AB" * 20


def test_the_rotation_goes_on_where_the_last_take_stopped() -> None:
    q = FairQueue()
    for user in "AAABBBCCC":
        q.put(occ(user))
    assert users(q.take(2)) == "AB"
    assert users(q.take(4)) == "CABC"
    assert users(q.take(10)) == "ABC"


def test_a_repeat_of_a_queued_execution_is_ignored() -> None:
    """The outbox re-sends what the queue still holds (rows not yet sent are its backlog)."""
    q = FairQueue()
    o = occ("A")
    q.put(o)
    q.put(o)
    assert o.execution_id in q
    assert q.take(5) == [o]
    assert o.execution_id not in q


class RecordingDispatcher:
    """A ``Dispatcher`` that keeps each batch it is given."""

    def __init__(self) -> None:
        self.batches: list[list[Occurrence]] = []

    async def dispatch(self, shard: int, epoch: int, occurrences: list[Occurrence]) -> None:
        self.batches.append(occurrences)


async def test_the_window_paces_a_flood_and_a_newcomer_still_gets_its_share() -> None:
    """With the lane's window full of A's flood, nothing more of A goes out until results
    come back; B, arriving behind it, sends up to its share of the window at once."""
    sent = RecordingDispatcher()
    fair = FairDispatch(cast(Dispatcher, sent), 0, 1, window=10, window_s=3600)
    task = asyncio.create_task(fair.run())

    async def batches(n: int) -> None:
        async def probe() -> bool:
            return len(sent.batches) >= n

        await eventually(probe, 5, what=f"{n} batches sent")
        await asyncio.sleep(0)  # (no more than n: the next ones would need room)
        assert len(sent.batches) == n

    try:
        flood = [occ("A") for _ in range(30)]
        fair.put(flood)
        await batches(1)
        assert sent.batches[0] == flood[:10]
        few = [occ("B") for _ in range(8)]
        fair.put(few)
        await batches(2)
        assert sent.batches[1] == few[:5]  # half of the window: two tenants
        assert fair.waiting == 20 + 3
        assert len(sent.batches) == 2  # the window is full and B has its share
        fair.finished([o.execution_id for o in flood[:10]])
        await batches(3)
        # Room for 5 (B's 5 still ahead), taken in turn; then A, below its share (5 of the
        # window of 10), tops up to it: never more than twice the window ahead in all.
        assert users(sent.batches[2]) == "ABABAAA"
    finally:
        task.cancel()

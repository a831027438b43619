"""The interleaving rule of a lane's fair dispatch (scheduler.fair_dispatch.FairQueue)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from scheduler.fair_dispatch import FairQueue
from scheduler.model import Occurrence

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

"""Pure pieces of the per-record path: parsing, the registry, holding, payload encoding."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from aiokafka.structs import ConsumerRecord

from core.backoff import Backoff
from core.clock import utcnow
from schemas.v1.events import DueEvent
from schemas.v1.targets import KafkaTarget, ScriptTarget, SqlTarget
from topics.dlq import REASON, SOURCE_OFFSET, DeadLetter
from workers.execution import parse_due_event
from workers.targets import Attempt, Outcome, TargetRegistry
from workers.targets.kafka import delivery_headers, encode_value
from workers.timing import Instants

ATTEMPT = Attempt(execution_id=uuid4(), job_id=uuid4(), user_id="u-1", attempt=1)


def record(value: bytes | None, key: bytes | None = b"k", offset: int = 7) -> ConsumerRecord:
    return ConsumerRecord(
        topic="jobs.due.normal",
        partition=2,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


def due_event() -> DueEvent:
    return DueEvent(
        execution_id=uuid4(),
        job_id=uuid4(),
        user_id="u-1",
        attempt=1,
        scheduled_for=datetime.now(UTC),
        lane="normal",
        target=KafkaTarget(type="kafka", topic="out"),
        shard=0,
    )


def test_a_due_event_parses() -> None:
    event = due_event()
    assert parse_due_event(record(event.model_dump_json().encode())) == event


@pytest.mark.parametrize(
    "value",
    [b"not json", b'{"version": 1}', b"\xff\xfe", None, b'{"type": "create"}'],
)
def test_anything_else_becomes_a_dead_letter_with_its_origin(value: bytes | None) -> None:
    letter = parse_due_event(record(value, key=b"key-1", offset=41))
    assert isinstance(letter, DeadLetter)
    assert (letter.key, letter.value, letter.partition, letter.offset) == (b"key-1", value, 2, 41)
    headers = dict(letter.headers())
    assert headers[REASON].startswith(b"invalid DueEvent")
    assert headers[SOURCE_OFFSET] == b"41"


@pytest.mark.parametrize(
    "target",
    [
        ScriptTarget(type="script", command=["true"]),
        SqlTarget(type="sql", connection="main", statement="select 1"),
    ],
)
async def test_a_type_without_runner_fails_as_not_enabled(target: Any) -> None:
    outcome = await TargetRegistry().run(target, ATTEMPT)
    assert outcome == Outcome(
        succeeded=False,
        error=f"target type {target.type!r} is not enabled on this worker",
        retryable=False,
    )


async def test_a_registered_runner_gets_the_target_and_attempt() -> None:
    calls: list[tuple[Any, Attempt]] = []

    async def runner(target: Any, attempt: Attempt) -> Outcome:
        calls.append((target, attempt))
        return Outcome(succeeded=True)

    registry = TargetRegistry()
    registry.register("script", runner)
    target = ScriptTarget(type="script", command=["true"])
    assert (await registry.run(target, ATTEMPT)).succeeded
    assert calls == [(target, ATTEMPT)]
    with pytest.raises(ValueError, match="already registered"):
        registry.register("script", runner)


async def test_hold_returns_at_the_instant_never_before() -> None:
    instant = utcnow() + timedelta(milliseconds=50)
    await asyncio.wait_for(Instants().hold_until(instant), timeout=10)
    assert utcnow() >= instant


async def test_hold_does_not_wait_for_a_past_instant() -> None:
    await asyncio.wait_for(Instants().hold_until(utcnow() - timedelta(seconds=5)), timeout=0.05)


class WallClock:
    """The wall clock ``workers.timing`` reads: scripted, so a slow machine cannot reorder.

    The first ``holders`` readings (each holder's first look) are 50 ms before the instant,
    however long the holders take to start; the readings after them come from ``then``.
    """

    def __init__(self, instant: datetime, holders: int, then: list[timedelta]) -> None:
        self.instant, self.holders, self.then = instant, holders, then
        self.readings = 0

    def __call__(self) -> datetime:
        self.readings += 1
        if self.readings <= self.holders:
            return self.instant - timedelta(milliseconds=50)
        return self.instant - (self.then.pop(0) if self.then else timedelta(0))


async def _wake_order(
    monkeypatch: pytest.MonkeyPatch, order: list[Any], clock: WallClock
) -> list[Any]:
    """Holders of ``order`` (``(tenant, n)`` pairs, or bare values of one tenant) hold for
    the clock's instant; returns the order they woke in."""
    monkeypatch.setattr("workers.timing.utcnow", clock)
    instants = Instants()
    woke: list[Any] = []

    async def hold(item: Any) -> None:
        await instants.hold_until(clock.instant, item[0] if isinstance(item, tuple) else "")
        woke.append(item)

    await asyncio.gather(*(hold(item) for item in order))
    return woke


async def test_one_tenants_holders_of_one_instant_wake_in_the_order_they_started_holding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order = [7, 3, 9, 0, 5, 1, 8, 2, 6, 4] * 20  # not sorted: arrival order is what counts
    clock = WallClock(utcnow(), holders=len(order), then=[])
    assert await _wake_order(monkeypatch, order, clock) == order


async def test_holders_of_one_instant_wake_round_robin_by_tenant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("a", 4), ("b", 2), ("c", 1)]
    clock = WallClock(utcnow(), holders=len(held), then=[])
    woke = await _wake_order(monkeypatch, held, clock)
    # One of each tenant per round, tenants in the order they first held; each in its order.
    assert woke == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("b", 2), ("a", 3), ("a", 4)]


async def test_holders_keep_their_order_when_the_timer_fires_before_the_wall_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The monotonic timer may fire a hair before the wall clock reaches the instant.

    The first reading after the timer fires is 20 ms short of the instant; later ones are
    past it. Nobody may lose their place in the line to that early wake-up (the first holder
    used to: it alone saw the early reading and went back to wait).
    """
    order = [7, 3, 9, 0, 5]
    clock = WallClock(utcnow(), holders=len(order), then=[timedelta(milliseconds=20)])
    assert await _wake_order(monkeypatch, order, clock) == order
    assert not clock.then  # the early reading was taken


async def test_a_cancelled_holder_does_not_cancel_the_others() -> None:
    instants = Instants()
    instant = utcnow() + timedelta(milliseconds=50)
    first = asyncio.create_task(instants.hold_until(instant))
    second = asyncio.create_task(instants.hold_until(instant))
    await asyncio.sleep(0)  # both holding
    first.cancel()
    await asyncio.wait_for(second, timeout=2)
    assert first.cancelled() and utcnow() >= instant


def test_kafka_values_are_json_unless_a_string() -> None:
    assert encode_value("raw text") == b"raw text"
    assert encode_value({"a": 1}) == b'{"a":1}'
    assert encode_value(None) == b"null"


def test_kafka_delivery_carries_the_idempotency_key() -> None:
    target = KafkaTarget(type="kafka", topic="out", headers={"x": "1", "IDEMPOTENCY-KEY": "no"})
    assert delivery_headers(target, ATTEMPT) == [
        ("x", b"1"),
        ("Idempotency-Key", str(ATTEMPT.execution_id).encode()),
    ]


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(initial_s=0.1, max_s=1.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 9)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]

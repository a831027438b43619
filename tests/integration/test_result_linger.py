"""The worker's result batches (workers.reports) against the real broker: one linger for
every shard, so the batches of a linger leave together, in one produce request."""

# The harness's fixtures are imported by name, which pyflakes reads as unused imports and
# their parameters as redefinitions.
# ruff: noqa: F401, F811

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from schemas.v1.events import ResultEvent
from tests.integration.worker_harness import cat, lane_kafka, producer
from topics.catalog import Catalog
from topics.partitioner import partition_for
from workers.reports import Reporter

pytestmark = pytest.mark.services


class Turns:
    """Counts the event loop's iterations (a callback that re-schedules itself runs once in
    each), so a test can tell whether two things happened in the same one."""

    def __init__(self) -> None:
        self.count = 0
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.count += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


class SpyProducer:
    """The real producer; records the loop iteration in which each partition's batch was
    first handed to it."""

    def __init__(self, real: AIOKafkaProducer, turns: Turns) -> None:
        self._real = real
        self._turns = turns
        self.client = real.client
        self.sent: dict[int, int] = {}

    async def send_and_wait(self, topic: str, **kwargs: Any) -> Any:
        # The first send of a batch: a retry (a partition whose leader moved) comes later.
        self.sent.setdefault(kwargs["partition"], self._turns.count)
        return await self._real.send_and_wait(topic, **kwargs)


def result_of(user_id: str) -> ResultEvent:
    now = datetime.now(UTC)
    return ResultEvent(
        execution_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        user_id=user_id,
        attempt=1,
        status="succeeded",
        started_at=now,
        finished_at=now,
        worker="w-1",
    )


def users_on_two_partitions(partitions: int) -> tuple[str, str]:
    found: dict[int, str] = {}
    for n in range(1000):
        found.setdefault(partition_for(f"u-{n}".encode(), partitions), f"u-{n}")
        if len(found) == 2:
            break
    first, second = found.values()
    return first, second


async def test_a_batch_opened_during_another_shards_linger_leaves_with_it(
    producer: AIOKafkaProducer, cat: Catalog
) -> None:
    partitions = len(await producer.partitions_for(cat.results.name))
    first, second = users_on_two_partitions(partitions)
    turns = Turns()
    spy = SpyProducer(producer, turns)
    # Long enough for the round trip below on a loaded machine (one that outlasted 0.5 s).
    reporter = Reporter(spy, cat, linger_s=3.0)  # type: ignore[arg-type]
    try:
        early = asyncio.create_task(reporter.result(result_of(first)))
        # A round trip to the broker: the second shard's result comes a while later, so a
        # linger of its own would end in a later iteration than the first one's.
        await producer.client.fetch_all_metadata()
        await asyncio.gather(early, reporter.result(result_of(second)))
    finally:
        turns.stop()
        await reporter.close()
    here, there = (partition_for(u.encode(), partitions) for u in (first, second))
    assert set(spy.sent) == {here, there}
    assert spy.sent[here] == spy.sent[there]

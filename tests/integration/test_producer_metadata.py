"""A producer that tracks its topics refreshes their metadata only, not the whole cluster's
(scheduler.kafka_io.track_topics; the scheduler refreshes every 5 s)."""

# The harness's fixtures are imported by name, which pyflakes reads as unused imports and
# their parameters as redefinitions.
# ruff: noqa: F401, F811

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer

from core.settings import KafkaSettings
from scheduler.kafka_io import track_topics
from tests.integration.worker_harness import cat, lane_kafka, producer
from topics.admin import create_topics
from topics.catalog import Catalog, catalog

pytestmark = pytest.mark.services


async def test_a_tracked_producer_refreshes_the_metadata_of_its_topics_only(
    producer: AIOKafkaProducer, cat: Catalog, lane_kafka: KafkaSettings
) -> None:
    others = lane_kafka.model_copy(update={"namespace": f"other{uuid.uuid4().hex[:8]}."})
    await create_topics(others, catalog(others))
    foreign = catalog(others).results.name
    mine = [t.name for t in cat.all()]
    await producer.client.force_metadata_update()
    assert foreign in producer.client.cluster.topics(), "tracking none, a refresh reads all"
    await track_topics(producer, mine)
    await producer.client.force_metadata_update()
    assert producer.client.cluster.topics() == set(mine)
    assert await producer.partitions_for(cat.due["normal"].name)

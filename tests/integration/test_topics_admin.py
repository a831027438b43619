"""Creating the catalog's topics: idempotent, and refused when the layout breaks sharding."""

from __future__ import annotations

import uuid

import pytest

from core.settings import KafkaSettings
from topics.admin import TopicLayoutError, admin_client, create_topics, existing_partitions
from topics.catalog import catalog

pytestmark = pytest.mark.services


def fresh(kafka_settings: KafkaSettings, partitions: int) -> KafkaSettings:
    namespace = f"{kafka_settings.namespace}a{uuid.uuid4().hex[:8]}."
    return kafka_settings.model_copy(
        update={"namespace": namespace, "command_partitions": partitions}
    )


async def test_topics_are_created_once_and_described_by_name(
    services: None, kafka_settings: KafkaSettings
) -> None:
    settings = fresh(kafka_settings, 3)
    cat = catalog(settings)
    names = [spec.name for spec in cat.all()]

    assert sorted(await create_topics(settings, cat)) == sorted(names)
    assert await create_topics(settings, cat) == []
    found = await existing_partitions(admin_client(settings), [*names, "kjs-no-such-topic"])
    assert found == {spec.name: spec.partitions for spec in cat.all()}


async def test_commands_and_results_with_another_count_are_refused(
    services: None, kafka_settings: KafkaSettings
) -> None:
    settings = fresh(kafka_settings, 3)
    await create_topics(settings, catalog(settings))
    grown = settings.model_copy(update={"command_partitions": 4})

    with pytest.raises(TopicLayoutError, match="has 3 partitions but 4 are configured"):
        await create_topics(grown, catalog(grown))

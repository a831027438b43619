"""Fixtures of the in-process tests: the real API app, and a shard with topics of its own, on
the real broker and Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer

from api.app import build_app
from api.deps import ApiDeps
from api.publisher import CommandPublisher
from core.settings import KafkaSettings
from scheduler.kafka_io import ProducerSender
from topics.admin import create_topics
from topics.catalog import Catalog, catalog
from topics.producer import durable_producer

Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
async def publisher(kafka_settings: KafkaSettings) -> AsyncIterator[CommandPublisher]:
    p = CommandPublisher(kafka_settings, timeout_s=10.0)
    yield p
    await p.close()


@pytest.fixture
async def client(
    pool: asyncpg.Pool, publisher: CommandPublisher, topic_catalog: Catalog
) -> AsyncIterator[Client]:
    """The API with its defaults (auth on: requests carry their own key). A test module that
    needs other settings defines its own ``client``."""
    deps = ApiDeps(pool, publisher, topic_catalog, timedelta(seconds=60))
    async with TestClient(TestServer(build_app(deps))) as c:
        yield c


@pytest.fixture
async def own_topics(services: None, kafka_settings: KafkaSettings) -> KafkaSettings:
    """Topics no worker of the session reads, so every due event stays to be counted."""
    settings = kafka_settings.model_copy(
        update={"namespace": f"{kafka_settings.namespace}o{uuid.uuid4().hex[:8]}."}
    )
    await create_topics(settings, catalog(settings))
    return settings


@pytest.fixture
async def sender(own_topics: KafkaSettings) -> AsyncIterator[ProducerSender]:
    producer: AIOKafkaProducer = durable_producer(own_topics)
    await producer.start()
    try:
        yield ProducerSender(producer)
    finally:
        await producer.stop()


@pytest.fixture
def shard() -> int:
    """A shard of this test alone (epochs are per shard; the session's schedulers use 0..2)."""
    return 3000 + uuid.uuid4().int % 1_000_000


@pytest.fixture
async def tenant_client(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    topic_catalog: Catalog,
    auth_headers: dict[str, str],
) -> AsyncIterator[Client]:
    """The API with its defaults, every request carrying the test tenant's key."""
    deps = ApiDeps(pool, publisher, topic_catalog, timedelta(seconds=60))
    async with TestClient(TestServer(build_app(deps)), headers=auth_headers) as c:
        yield c

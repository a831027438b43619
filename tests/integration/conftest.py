"""Fixtures of the in-process API tests: the real app on the real broker and Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import build_app
from api.deps import ApiDeps
from api.publisher import CommandPublisher
from core.settings import KafkaSettings
from topics.catalog import Catalog

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

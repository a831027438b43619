"""The runners this worker ships with. ``script`` and ``sql`` are not among them yet, so
the registry reports those as not enabled."""

from __future__ import annotations

import aiohttp
from aiokafka import AIOKafkaProducer

from workers.targets import TargetRegistry
from workers.targets.http import HttpRunner
from workers.targets.kafka import KafkaRunner


def builtin_registry(
    session: aiohttp.ClientSession, producer: AIOKafkaProducer, http_excerpt_bytes: int
) -> TargetRegistry:
    registry = TargetRegistry()
    registry.register("http", HttpRunner(session, http_excerpt_bytes))
    registry.register("kafka", KafkaRunner(producer))
    return registry

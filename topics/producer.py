"""The one way kjs processes produce: durable (acks=all, idempotent) and murmur2-keyed."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from core.settings import KafkaSettings
from topics.security import aiokafka_config


def durable_producer(kafka: KafkaSettings, *, linger_ms: int = 0) -> AIOKafkaProducer:
    # aiokafka's default partitioner is Java's murmur2, so keys land where faust and
    # the Java clients expect them.
    return AIOKafkaProducer(
        **aiokafka_config(kafka),
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        request_timeout_ms=10_000,
    )

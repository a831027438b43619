"""The ``kafka`` target: delayed delivery of a value to a topic, done once it is acked."""

from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from schemas.v1.targets import KafkaTarget
from workers.targets.base import Attempt, Outcome, with_idempotency_key


def encode_value(value: object) -> bytes:
    """A string is delivered as it is; any other value as JSON, like an HTTP target's body."""
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


def delivery_headers(target: KafkaTarget, attempt: Attempt) -> list[tuple[str, bytes]]:
    # The same idempotency key an HTTP target gets, so a consumer can drop a duplicate.
    headers = with_idempotency_key(target.headers, attempt)
    return [(name, value.encode()) for name, value in headers.items()]


class KafkaRunner:
    """Produces through the worker's durable producer, the one its results go through.

    Which topics a job may write to is the operator's (``TargetSettings``); the worker checks
    it before any runner is called (``workers.policy``), so this runner sends where it is told.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def __call__(self, target: KafkaTarget, attempt: Attempt) -> Outcome:
        try:
            async with asyncio.timeout(target.timeout_s):
                metadata = await self._producer.send_and_wait(
                    target.topic,
                    value=encode_value(target.value),
                    key=target.key.encode() if target.key is not None else None,
                    headers=delivery_headers(target, attempt),
                )
        except TimeoutError:
            # The record may still be delivered; a retry is a duplicate with the same key.
            return Outcome.failure(
                f"not acknowledged within {target.timeout_s:g} s", retryable=True
            )
        except KafkaError as exc:
            # A timeout (e.g. an unknown topic's metadata never arrives) may pass; so may
            # any error Kafka itself marks retriable.
            retryable = isinstance(exc, KafkaTimeoutError) or bool(exc.retriable)
            return Outcome.failure(f"{type(exc).__name__}: {exc}", retryable=retryable)
        return Outcome(
            succeeded=True,
            output_excerpt=f"{metadata.topic}[{metadata.partition}]@{metadata.offset}",
        )

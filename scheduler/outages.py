"""Wait out a dependency outage instead of dropping work or acknowledging it unapplied."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError

from core.backoff import OUTAGE_BACKOFF, Backoff
from core.db import is_unavailable
from scheduler.metrics import DEPENDENCY_ERRORS

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    return is_unavailable(exc) or isinstance(exc, KafkaError | TimeoutError)


async def until_available(
    step: Callable[[], Awaitable[T]], what: str, backoff: Backoff = OUTAGE_BACKOFF
) -> T:
    """Run ``step``, again and again after a capped exponential backoff while Postgres or Kafka
    is down.

    The caller's consumer does not move past the record meanwhile, so nothing is
    acknowledged before its effect is durable.
    """
    failures = 0
    while True:
        try:
            return await step()
        except Exception as exc:
            if not is_transient(exc):
                raise
            DEPENDENCY_ERRORS.labels("kafka" if isinstance(exc, KafkaError) else "postgres").inc()
            failures += 1
            delay = backoff.delay(failures)
            log.warning("%s: %s: %s; retrying in %.1fs", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)

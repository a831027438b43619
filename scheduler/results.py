"""Record workers' results, from ``jobs.results``, on the shard that owns the tenant."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from pydantic import ValidationError

from scheduler import store
from scheduler.commands import format_errors
from scheduler.deadletters import dead_letter
from scheduler.kafka_io import Sender
from scheduler.records import Record
from scheduler.retrying import until_available
from scheduler.shards import Shards
from schemas.v1.events import ResultEvent
from topics.catalog import Catalog


@dataclass
class ResultHandler:
    shards: Shards
    pool: asyncpg.Pool
    sender: Sender
    catalog: Catalog

    async def handle(self, record: Record) -> str:
        """Record one result; returns ``recorded``, ``duplicate`` or ``rejected``."""
        try:
            result = ResultEvent.model_validate_json(record.value or b"")
        except ValidationError as exc:
            reason = format_errors(exc).replace("invalid command", "invalid result")
            await until_available(
                lambda: dead_letter(self.sender, self.catalog.dlq.name, record, reason),
                "dead letter",
            )
            return "rejected"
        shard = await self.shards.get(record.partition)

        async def apply() -> bool:
            return await store.record_result(self.pool, record.partition, shard.epoch, result)

        recorded = await until_available(apply, f"result {record.source}")
        return "recorded" if recorded else "duplicate"

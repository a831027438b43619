"""Create the catalog's topics, idempotently, and refuse a layout that breaks sharding."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from confluent_kafka.admin import AdminClient, NewTopic

from topics.catalog import Catalog, TopicSpec


class TopicLayoutError(RuntimeError):
    pass


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


async def existing_partitions(admin: AdminClient, timeout_s: float = 10.0) -> dict[str, int]:
    metadata = await asyncio.to_thread(admin.list_topics, timeout=timeout_s)
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}


def check_layout(cat: Catalog, existing: dict[str, int]) -> None:
    """An existing topic must have the partition count the shards depend on."""
    problems = []
    for spec in (cat.commands, cat.results):
        have = existing.get(spec.name)
        if have is not None and have != spec.partitions:
            problems.append(
                f"{spec.name} has {have} partitions but {spec.partitions} are configured"
            )
    have_c, have_r = existing.get(cat.commands.name), existing.get(cat.results.name)
    if have_c is not None and have_r is not None and have_c != have_r:
        problems.append(
            f"{cat.commands.name} ({have_c}) and {cat.results.name} ({have_r}) must have the "
            "same partition count: they are co-partitioned by user_id"
        )
    if problems:
        raise TopicLayoutError(
            "refusing to go on, the topic layout breaks co-partitioning: "
            + "; ".join(problems)
            + ". Set KJS_COMMAND_PARTITIONS to match, or see docs/architecture.md "
            "(changing the partition count)."
        )


async def create_topics(bootstrap: str, cat: Catalog, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; returns the names created. Safe to run again."""
    admin = admin_client(bootstrap)
    existing = await existing_partitions(admin)
    check_layout(cat, existing)
    missing = [spec for spec in cat.all() if spec.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(list(_new_topics(missing)), operation_timeout=timeout_s)
    created = []
    for name, future in futures.items():
        try:
            await asyncio.wrap_future(future)
            created.append(name)
        except Exception as exc:
            # Another process created it in between: fine, as long as the layout holds.
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    check_layout(cat, await existing_partitions(admin))
    return created


def _new_topics(specs: Iterable[TopicSpec]) -> Iterable[NewTopic]:
    for spec in specs:
        yield NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=spec.replication_factor,
            config=spec.config,
        )

"""Create the catalog's topics, idempotently, and refuse a layout that breaks sharding."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from core.settings import KafkaSettings
from topics.catalog import Catalog, TopicSpec
from topics.security import librdkafka_config


class TopicLayoutError(RuntimeError):
    pass


class KafkaRefused(RuntimeError):
    """The broker refused the connection: wrong SASL credentials or a failed TLS handshake."""


class _Admin(AdminClient):
    """An admin client that keeps the authentication and TLS errors librdkafka reports, which
    otherwise surface only as a metadata timeout ("broker transport failure")."""

    def __init__(self, config: dict[str, Any]) -> None:
        refusals: list[str] = []

        # A closure over the list, not a bound method: no cycle, so the client (and its
        # threads and connections) is freed as soon as the caller drops it.
        def on_error(error: KafkaError) -> None:
            if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
                refusals.append(error.str())

        with_callback: dict[str, Any] = {**config, "error_cb": on_error}
        super().__init__(with_callback)
        self.refusals = refusals


def admin_client(kafka: KafkaSettings) -> AdminClient:
    return _Admin(librdkafka_config(kafka))


def _raise_if_refused(admin: AdminClient) -> None:
    admin.poll(0)  # serves error_cb
    refusals = getattr(admin, "refusals", None)
    if refusals:
        raise KafkaRefused(
            f"Kafka refused the connection: {refusals[-1]}. Check KJS_KAFKA_SECURITY_PROTOCOL, "
            "KJS_KAFKA_SASL_* and KJS_KAFKA_SSL_*."
        )


async def existing_partitions(
    admin: AdminClient, names: Iterable[str], timeout_s: float = 10.0
) -> dict[str, int]:
    """The partition counts of those of ``names`` that exist.

    Described by name, not by listing the cluster: a cluster of thousands of topics takes
    seconds to list, and kjs needs to know about its own handful. Attempts grow from one
    second, so refused credentials still fail in about a second.
    """
    wanted = list(names)
    deadline = time.monotonic() + timeout_s
    attempt = 1.0
    while True:
        timeout = max(0.1, min(attempt, deadline - time.monotonic()))
        futures = admin.describe_topics(TopicCollection(wanted), request_timeout=timeout)
        found: dict[str, int] = {}
        try:
            for name, future in futures.items():
                try:
                    found[name] = len((await asyncio.wrap_future(future)).partitions)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise
            return found
        except KafkaException:
            _raise_if_refused(admin)
            if time.monotonic() >= deadline:
                raise
            attempt *= 2


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


async def create_topics(kafka: KafkaSettings, cat: Catalog, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; returns the names created. Safe to run again."""
    admin = admin_client(kafka)
    names = [spec.name for spec in cat.all()]
    existing = await existing_partitions(admin, names)
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
    # A topic just created may be missing from a broker's metadata for a moment; the
    # layout is judged once every topic is seen, so a race with another creator that
    # used another count is caught here rather than by the shards later.
    deadline = time.monotonic() + timeout_s
    while len(existing := await existing_partitions(admin, names)) < len(names):
        if time.monotonic() >= deadline:
            missing_now = sorted(set(names) - set(existing))
            raise TopicLayoutError(f"topics not visible after creating them: {missing_now}")
        await asyncio.sleep(0.1)
    check_layout(cat, existing)
    return created


def _new_topics(specs: Iterable[TopicSpec]) -> Iterable[NewTopic]:
    for spec in specs:
        yield NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=spec.replication_factor,
            config=spec.config,
        )


async def grow_topics(
    kafka: KafkaSettings, names: list[str], partitions: int, timeout_s: float = 30.0
) -> list[str]:
    """Grow each topic to ``partitions`` (Kafka only adds partitions); returns the names grown.
    A topic that has them already is left alone, so a re-run after a crash is a no-op. Returns
    once the metadata shows every topic at ``partitions``."""
    admin = admin_client(kafka)
    existing = await existing_partitions(admin, names)
    missing = [name for name in names if name not in existing]
    if missing:
        raise TopicLayoutError(f"no topic {', '.join(missing)}: run `kjs topics create` first")
    grow = [name for name in names if existing[name] < partitions]
    if grow:
        futures = admin.create_partitions(
            [NewPartitions(name, partitions) for name in grow], operation_timeout=timeout_s
        )
        for future in futures.values():
            await asyncio.wrap_future(future)
    deadline = time.monotonic() + timeout_s
    while True:
        now = await existing_partitions(admin, names)
        if all(now.get(name, 0) >= partitions for name in names):
            return grow
        if time.monotonic() >= deadline:
            raise TopicLayoutError(f"{', '.join(names)} did not reach {partitions} partitions")
        await asyncio.sleep(0.2)


async def topic_partitions(kafka: KafkaSettings, names: list[str]) -> dict[str, int]:
    """The partition count of each of ``names`` that exists."""
    return await existing_partitions(admin_client(kafka), names)

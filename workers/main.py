"""The worker process: ``kjs worker --lane normal`` runs ``run(lane)``.

``Worker`` takes its settings as arguments so tests run it in-process against the real
broker and Postgres; ``run`` reads them from the environment and wires the signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from core import tracing
from core.backoff import DEFAULT_BACKOFF
from core.db import StoreUnavailable, create_pool
from core.gc_tuning import tune_collector
from core.ids import process_id
from core.ops_server import publish_build_info, start_ops_server
from core.queries import QUERIES
from core.secrets import SecretBox, box_from
from core.settings import (
    DatabaseSettings,
    EventsSettings,
    KafkaSettings,
    ObservabilitySettings,
    SecuritySettings,
    TargetSettings,
    WorkerSettings,
    load,
)
from schemas.v1.addresses import AddressGuard
from schemas.v1.statuses import Lane
from topics.catalog import catalog
from topics.producer import durable_producer
from topics.security import aiokafka_config
from workers.claims import Claimer
from workers.execution import ExecutionService
from workers.lane import LaneLoop
from workers.leases import HEARTBEAT_INTERVAL_S, LEASE_TTL_S, LeaseKeeper
from workers.policy import TargetGuard
from workers.reports import Reporter
from workers.retention import DEFAULT_BATCH, prune_periodically
from workers.slots import Slots
from workers.targets.builtin import builtin_registry
from workers.targets.http_client import HttpClient
from workers.targets.sql import SqlPools

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerTuning:
    """Timings that are not operator settings: protocol constants, which tests shorten."""

    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    lease_ttl_s: float = LEASE_TTL_S
    # The consumer's max.poll.interval.ms; the lane loop polls far more often than this
    # whatever its jobs do, so a long job never costs the group a rebalance.
    max_poll_interval_ms: int = 300_000
    # A killed worker's partitions move after this (the brokers' default minimum), before
    # its leases lapse (7 s), so the shard's re-dispatch of its runs finds a live member.
    session_timeout_ms: int = 6_000
    consumer_heartbeat_ms: int = 1_000
    retention_interval_s: float = 3600.0
    retention_batch: int = DEFAULT_BATCH


class Worker:
    """One lane's worker: owns its connections, and stops cleanly on ``stop()``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        db: DatabaseSettings,
        settings: WorkerSettings,
        lane: Lane,
        targets: TargetSettings,
        *,
        tuning: WorkerTuning = WorkerTuning(),
        secrets: SecretBox | None = None,
        events: EventsSettings | None = None,
    ) -> None:
        self.id = process_id(settings.worker_id)
        # KJS_EVENTS=on: each claim writes its 'execution.started' event (workers.claims).
        self._events = (events or EventsSettings()).on
        # Opens the sealed secrets of targets just before they run (core.secrets).
        self._secrets = secrets or SecretBox()
        self.lane = lane
        self._kafka = kafka
        self._db = db
        self._settings = settings
        self._targets = targets
        self._tuning = tuning
        self._stopping = asyncio.Event()
        self._loop: LaneLoop | None = None
        self.leases: LeaseKeeper | None = None
        # Set once the group gave this worker partitions; tests wait on it.
        self.assigned = asyncio.Event()
        self._pool: asyncpg.Pool | None = None

    @property
    def in_flight(self) -> int:
        """Records fetched and not finished yet (held, claiming, running or reporting)."""
        return self._loop.in_flight if self._loop is not None else 0

    @property
    def lane_loop(self) -> LaneLoop | None:
        return self._loop

    async def ready(self) -> dict[str, str]:
        """Postgres answers (claims need it) and the lane's group assigned partitions."""
        pool = self._pool
        if pool is None:
            return {"postgres": "not connected yet", "kafka": "not assigned yet"}
        try:
            await asyncio.wait_for(pool.fetchval(QUERIES["ping"]), 2.0)
            postgres = "ok"
        except Exception as exc:
            postgres = f"unavailable: {type(exc).__name__}"
        kafka = "ok" if self.assigned.is_set() else "not assigned yet"
        return {"postgres": postgres, "kafka": kafka}

    def stop(self) -> None:
        """Stop fetching; ``run`` then drains in-flight records, commits and returns."""
        self._stopping.set()

    async def run(self) -> None:
        """Run until ``stop()``, then wind down in order.

        1. Stop fetching.
        2. Drain: in-flight records get ``worker_drain_s`` to finish; those cut off report
           themselves interrupted and stay uncommitted.
        3. Commit the contiguous done offsets.
        4. Close, in reverse order of opening: background tasks (leases, retention), the
           consumer (leaving the group), HTTP session and SQL pools, producer, store pool.
        """
        async with AsyncExitStack() as stack:
            pool = await self._connect_store()
            self._pool = pool
            if pool is None:
                return
            stack.push_async_callback(pool.close)
            loop = await self._open_lane(stack, pool)
            self._loop = loop
            try:
                await loop.fetch_until_stopped()
            finally:
                await loop.drain(self._settings.worker_drain_s)
        log.info("worker %s stopped", self.id)

    async def _open_lane(self, stack: AsyncExitStack, pool: asyncpg.Pool) -> LaneLoop:
        """Start the producer, HTTP session, SQL pools, consumer and background tasks, each
        closed by ``stack`` in reverse order, so a start that fails halfway leaves nothing
        open."""
        cat = catalog(self._kafka)
        # No linger: 5 ms of it made a 10,000-job burst drain a second slower (4.1 s -> 5.1 s
        # in bench-peers), although it saves produce requests at a steady rate.
        producer = durable_producer(self._kafka)
        await producer.start()
        stack.push_async_callback(producer.stop)
        # Every connection's DNS answers pass the SSRF guard (workers.targets.http_client).
        http = HttpClient(AddressGuard.from_allowlist(self._targets.http_allowlist))
        stack.push_async_callback(http.close)
        sql_pools = SqlPools(self._targets.sql_connections)
        stack.push_async_callback(sql_pools.close)

        excerpt_bytes = self._settings.http_excerpt_bytes
        registry = builtin_registry(http, producer, excerpt_bytes, self._targets, sql_pools)
        tuning = self._tuning
        leases = LeaseKeeper(
            pool, self.id, interval_s=tuning.heartbeat_interval_s, ttl_s=tuning.lease_ttl_s
        )
        self.leases = leases
        concurrency = self._settings.worker_concurrency
        # Results are batched by partition (workers.reports), which needs the topic's.
        await producer.partitions_for(cat.results.name)
        reporter = Reporter(producer, cat)
        stack.push_async_callback(reporter.close)
        service = ExecutionService(
            Claimer(pool, self.id, lease_s=tuning.lease_ttl_s, events=self._events),
            registry,
            reporter,
            TargetGuard(self._targets, frozenset(t.name for t in cat.all())),
            leases,
            self.id,
            slots=Slots(concurrency),
            secrets=self._secrets,
        )
        consumer = AIOKafkaConsumer(
            **aiokafka_config(self._kafka),
            group_id=cat.worker_group(self.lane),
            client_id=self.id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=tuning.max_poll_interval_ms,
            session_timeout_ms=tuning.session_timeout_ms,
            heartbeat_interval_ms=tuning.consumer_heartbeat_ms,
        )
        loop = LaneLoop(
            consumer,
            service.process,
            max_in_flight=concurrency + self._settings.worker_max_held,
            stopping=self._stopping,
            assigned=self.assigned,
        )
        consumer.subscribe([cat.due[self.lane].name], listener=loop.listener())
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        self._background(stack, leases.run(), "kjs-leases")
        retention_days = self._settings.execution_retention_days
        if retention_days > 0:
            pruning = prune_periodically(
                pool,
                timedelta(days=retention_days),
                tuning.retention_interval_s,
                tuning.retention_batch,
            )
            self._background(stack, pruning, "kjs-retention")
        log.info(
            "worker %s consuming %s as %s (concurrency %d, targets %s)",
            self.id,
            cat.due[self.lane].name,
            cat.worker_group(self.lane),
            concurrency,
            ", ".join(registry.types()),
        )
        return loop

    @staticmethod
    def _background(stack: AsyncExitStack, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        stack.push_async_callback(cancel)

    async def _connect_store(self) -> asyncpg.Pool | None:
        """Wait for Postgres rather than exit: claims need it, and the due events wait in
        Kafka meanwhile. ``None`` if stopped while waiting."""
        failures = 0
        while not self._stopping.is_set():
            try:
                return await create_pool(self._db)
            except StoreUnavailable as exc:
                failures += 1
                delay = DEFAULT_BACKOFF.delay(failures)
                log.warning("%s; retrying in %.2f s", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        return None


async def run(lane: Lane, metrics_port: int | None = None) -> None:
    """Entry point of ``kjs worker --lane <lane>``: runs until SIGTERM or SIGINT."""
    tune_collector()
    obs = load(ObservabilitySettings)
    # Before anything that logs: a bad KJS_EVENTS is the one line the user sees.
    events = load(EventsSettings)
    tracing.configure(f"kjs-worker-{lane}")
    port = obs.metrics_port if metrics_port is None else metrics_port
    publish_build_info(f"worker-{lane}")
    worker = Worker(
        load(KafkaSettings),
        load(DatabaseSettings),
        load(WorkerSettings),
        lane,
        load(TargetSettings),
        secrets=box_from(load(SecuritySettings).secret_keys, f"worker-{lane}"),
        events=events,
    )
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, worker.stop)
    ops = None
    if port is not None:
        ops = await start_ops_server(obs.metrics_host, port, worker.ready)
    try:
        await worker.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if ops is not None:
            await ops.cleanup()

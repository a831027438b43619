"""The worker process: ``kjs worker --lane normal`` runs ``run(lane)``.

``Worker`` takes its settings as arguments so tests run it in-process against the real
broker and Postgres; ``run`` reads them from the environment and wires the signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from contextlib import AsyncExitStack

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer

from kjs.settings import DatabaseSettings, KafkaSettings, Lane, WorkerSettings, load
from schemas.db import StoreUnavailable, create_pool
from topics.catalog import catalog
from topics.producer import durable_producer
from workers.backoff import DEFAULT_BACKOFF
from workers.claims import Claimer
from workers.execution import ExecutionService
from workers.identity import worker_id
from workers.lane import LaneLoop
from workers.reports import Reporter
from workers.targets.builtin import builtin_registry

log = logging.getLogger(__name__)

# How long a stopping worker lets in-flight records finish before cutting them off.
DRAIN_DEADLINE_S = 30.0
# Records held for their instant, beyond those running: a memory bound. The scheduler's
# lead keeps this small (rate x lead); it only bites on a burst of far-ahead events.
MAX_HELD = 10_000


class Worker:
    """One lane's worker: owns its connections, and stops cleanly on ``stop()``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        db: DatabaseSettings,
        settings: WorkerSettings,
        lane: Lane,
        *,
        drain_deadline_s: float = DRAIN_DEADLINE_S,
        max_held: int = MAX_HELD,
    ) -> None:
        self.id = worker_id(settings)
        self.lane = lane
        self._kafka = kafka
        self._db = db
        self._settings = settings
        self._drain_deadline_s = drain_deadline_s
        self._max_held = max_held
        self._stopping = asyncio.Event()
        self._loop: LaneLoop | None = None
        # Set once the group gave this worker partitions; tests wait on it.
        self.assigned = asyncio.Event()

    @property
    def in_flight(self) -> int:
        """Records fetched and not finished yet (held, claiming, running or reporting)."""
        return self._loop.in_flight if self._loop is not None else 0

    def stop(self) -> None:
        """Stop fetching; ``run`` then drains in-flight records, commits and returns."""
        self._stopping.set()

    async def run(self) -> None:
        async with AsyncExitStack() as stack:
            pool = await self._connect_store()
            if pool is None:
                return
            stack.push_async_callback(pool.close)
            loop = await self._open_lane(stack, pool)
            self._loop = loop
            try:
                await loop.fetch_until_stopped()
            finally:
                await loop.drain(self._drain_deadline_s)
        log.info("worker %s stopped", self.id)

    async def _open_lane(self, stack: AsyncExitStack, pool: asyncpg.Pool) -> LaneLoop:
        """Start the producer, HTTP session and consumer, each closed by ``stack`` in
        reverse order, so a start that fails halfway leaves nothing open."""
        cat = catalog(self._kafka)
        producer = durable_producer(self._kafka.kafka_bootstrap)
        await producer.start()
        stack.push_async_callback(producer.stop)
        session = aiohttp.ClientSession()
        stack.push_async_callback(session.close)

        registry = builtin_registry(session, producer, self._settings.http_excerpt_bytes)
        concurrency = self._settings.worker_concurrency
        service = ExecutionService(
            Claimer(pool, self.id),
            registry,
            Reporter(producer, cat),
            self.id,
            slots=asyncio.Semaphore(concurrency),
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.kafka_bootstrap,
            group_id=cat.worker_group(self.lane),
            client_id=self.id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        loop = LaneLoop(
            consumer,
            service.process,
            max_in_flight=concurrency + self._max_held,
            stopping=self._stopping,
            assigned=self.assigned,
        )
        consumer.subscribe([cat.due[self.lane].name], listener=loop.listener())
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        log.info(
            "worker %s consuming %s as %s (concurrency %d, targets %s)",
            self.id,
            cat.due[self.lane].name,
            cat.worker_group(self.lane),
            concurrency,
            ", ".join(registry.types()),
        )
        return loop

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


async def run(lane: Lane) -> None:
    """Entry point of ``kjs worker --lane <lane>``: runs until SIGTERM or SIGINT."""
    worker = Worker(load(KafkaSettings), load(DatabaseSettings), load(WorkerSettings), lane)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)

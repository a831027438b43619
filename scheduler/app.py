"""The scheduler as a faust app: one consumer group over commands and results.

Faust has no per-partition timers, so the shard timers are started and stopped from its
rebalance signals. Faust acknowledges a record when the agent moves past it, and commits
acknowledged offsets; the handlers only return once a record's effect is in Postgres, so a
crash redelivers at most the records whose effect may be missing (and applying is
idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import faust

from core.db import create_pool
from core.ids import process_id
from core.ops_server import start_ops_server
from core.queries import QUERIES
from core.quotas import Quotas
from core.secrets import box_from
from core.settings import (
    DatabaseSettings,
    EventsSettings,
    KafkaSettings,
    ObservabilitySettings,
    SchedulerSettings,
    SecuritySettings,
    TargetSettings,
    load,
)
from scheduler.command_batches import CommandBatches
from scheduler.commands import CommandHandler
from scheduler.daily_budget import DailyBudget
from scheduler.events import EventRelay
from scheduler.firing import Dispatcher
from scheduler.kafka_io import FaustSender, track_topics
from scheduler.outages import until_available
from scheduler.records import Record
from scheduler.results import ResultHandler
from scheduler.shards import NotOwned, Shards
from scheduler.store.events import SWITCH
from scheduler.store.shards import Fenced
from topics.catalog import Catalog, catalog
from topics.security import faust_broker, faust_credentials

log = logging.getLogger(__name__)
RESULT_BATCH = 500
# A result's only reader in a hurry is a status query, and the worker keeps the lease until
# the shard has it (workers.leases): so gather 500 ms of them per take, which writes each
# shard's in one fenced transaction. The workers send a linger's results of every shard at
# once (workers.reports): a wait of 50 ms made a take, and six transactions, per linger (at
# 500 jobs/s, 50 transactions a second of ten results; now about 10 of 50).
RESULT_BATCH_WAIT_S = 0.5
# Commands likewise: a burst of submissions is stored a shard's run of creates at a time.
COMMAND_BATCH = 500
COMMAND_BATCH_WAIT_S = 0.005
METADATA_MAX_AGE_MS = 5000


@dataclass
class Runtime:
    """What the agents need once the app runs; built lazily on the first rebalance."""

    pool: asyncpg.Pool
    shards: Shards
    commands: CommandBatches
    results: ResultHandler


@dataclass
class SchedulerApp:
    kafka: KafkaSettings
    db: DatabaseSettings
    settings: SchedulerSettings
    database_url: str | None = None
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    events: EventsSettings = field(default_factory=EventsSettings)
    catalog: Catalog = field(init=False)
    app: faust.App = field(init=False)
    outcomes: dict[str, int] = field(default_factory=dict)
    _runtime: Runtime | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _ops: Any = None

    def __post_init__(self) -> None:
        self.catalog = catalog(self.kafka)
        self.owner = process_id(self.settings.scheduler_id)
        self._datadir = tempfile.mkdtemp(prefix="kjs-scheduler-")
        self.app = faust.App(
            self.catalog.scheduler_group,
            broker=faust_broker(self.kafka),
            broker_credentials=faust_credentials(self.kafka),
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=False,
            topic_replication_factor=self.kafka.replication_factor,
            topic_partitions=self.kafka.command_partitions,
            # One process's table state dir; several schedulers on a host must not share it.
            datadir=self._datadir,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=0.5,
            broker_session_timeout=self.settings.session_timeout_s,
            broker_heartbeat_interval=min(3.0, self.settings.session_timeout_s / 5),
            producer_acks=-1,
            # A resize adds partitions: the group rebalances onto them, and re-routes may
            # produce to them, once the metadata says so (Kafka's default is 5 minutes).
            consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
            producer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
        )
        commands_topic = self.app.topic(self.catalog.commands.name)
        results_topic = self.app.topic(self.catalog.results.name)
        self.app.agent(commands_topic, name="kjs-commands")(self._consume_commands)
        self.app.agent(results_topic, name="kjs-results")(self._consume_results)
        self.app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        self.app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        self.app.on_before_shutdown.connect(self._on_shutdown)  # type: ignore[arg-type]
        self.app.task(self._start_ops_server)

    async def _start_ops_server(self) -> None:
        port = self.observability.metrics_port
        if port is not None:
            self._ops = await start_ops_server(self.observability.metrics_host, port, self.ready)

    async def ready(self) -> dict[str, str]:
        """Postgres answers, and the group gave this instance its (possibly empty) share."""
        if self._runtime is None:
            return {"postgres": "not connected yet", "shards": "not assigned yet"}
        try:
            await asyncio.wait_for(self._runtime.pool.fetchval(QUERIES["ping"]), 2.0)
            postgres = "ok"
        except Exception as exc:
            postgres = f"unavailable: {type(exc).__name__}"
        shards = "ok" if self._runtime.shards.assigned_once else "not assigned yet"
        return {"postgres": postgres, "shards": shards}

    async def runtime(self) -> Runtime:
        async with self._lock:
            if self._runtime is None:
                # Postgres down at start-up: wait for it (commands wait in Kafka meanwhile).
                pool = await until_available(
                    lambda: create_pool(self.db, dsn=self.database_url), "Postgres pool"
                )
                sender = FaustSender(self.app)
                # faust's producer wraps aiokafka's, started before the first assignment.
                producer: Any = getattr(self.app.producer, "_producer", None)
                if producer is not None:
                    await track_topics(producer, [t.name for t in self.catalog.all()])
                dispatcher = Dispatcher(pool, sender, self.catalog)
                quotas = Quotas(load(SecuritySettings))
                SWITCH.on = self.events.on
                relay = EventRelay(pool, sender, self.catalog.events.name) if SWITCH.on else None
                shards = Shards(
                    pool,
                    dispatcher,
                    self.settings,
                    self.owner,
                    DailyBudget(quotas),
                    relay=None if relay is None else relay.run,
                )
                self._runtime = Runtime(
                    pool=pool,
                    shards=shards,
                    commands=CommandBatches(
                        CommandHandler(
                            shards,
                            pool,
                            sender,
                            self.catalog,
                            self.settings,
                            load(TargetSettings),
                            quotas,
                            box_from(load(SecuritySettings).secret_keys, "scheduler"),
                        )
                    ),
                    results=ResultHandler(shards, pool, sender, self.catalog),
                )
            return self._runtime

    def _shards_in(self, tps: Any) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self.catalog.commands.name}

    async def _on_assigned(self, sender: Any, assigned: Any, **_: Any) -> None:
        rt = await self.runtime()
        await rt.shards.assign(self._shards_in(assigned))

    async def _on_revoked(self, sender: Any, revoked: Any, **_: Any) -> None:
        rt = await self.runtime()
        await rt.shards.revoke(self._shards_in(revoked))

    async def _on_shutdown(self, sender: Any, **_: Any) -> None:
        if self._ops is not None:
            await self._ops.cleanup()
        if self._runtime is not None:
            await self._runtime.shards.stop()
            await self._runtime.pool.close()
        shutil.rmtree(self._datadir, ignore_errors=True)

    async def _consume_commands(self, stream: Any) -> None:
        # take_events acknowledges the batch only after this body has applied it.
        async for events in stream.take_events(COMMAND_BATCH, within=COMMAND_BATCH_WAIT_S):
            rt = await self.runtime()
            for outcome in await rt.commands.handle_batch([_record(e) for e in events]):
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def _consume_results(self, stream: Any) -> None:
        # Results come in bursts (a burst of due jobs finishing together); recording the
        # successes of a batch in one transaction keeps the shard from falling behind.
        # take_events acknowledges the batch only after this body has handled it.
        async for events in stream.take_events(RESULT_BATCH, within=RESULT_BATCH_WAIT_S):
            rt = await self.runtime()
            records = [_record(e) for e in events]
            outcomes = await self._record_results(rt, records)
            for outcome in outcomes:
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def _record_results(self, rt: Runtime, records: list[Record]) -> list[str]:
        while True:
            try:
                return await rt.results.handle_batch(records)
            except Fenced as exc:
                # A resize fenced a shard: take it back and record the batch again (a result
                # recorded twice is a duplicate), re-routing the moved tenants' results.
                if await rt.shards.reclaim(exc):
                    continue
                fenced: Exception = exc
            except NotOwned as exc:
                fenced = exc
            log.warning("not recording %d results: %s", len(records), fenced)
            return ["fenced"]


def _record(event: Any) -> Record:
    msg = event.message
    return Record(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        headers=list(msg.headers or []),
        timestamp=getattr(msg, "timestamp", None),
    )

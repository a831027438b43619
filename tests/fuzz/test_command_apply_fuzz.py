"""Commands fuzzed through the scheduler's real apply path, on Postgres and Kafka.

``test_command_decoding_fuzz.py`` stops at decoding (a recording sender, records re-routed
before they reach a shard). Here every record sits on its tenant's partition, so it goes all
the way through ``scheduler.commands.CommandHandler.handle`` as the scheduler runs it: shards
owned for real (epochs in a database of this module's own, timers running), the operator's
target policy, the tenants' quotas (active jobs, submission rate, payload size, executions per
day), sealed secrets, fenced writes to Postgres, and dead letters produced to Kafka.

Input: plausible commands of a few tenants, each on the edge of a rule (a literal private
address, a topic off the allowlist, a timeout above the maximum, a time in the past, a
schedule with no future run, an id that names no job, ...), and part of them with one hostile
mutation. Properties, for every record:

- ``handle`` never raises, and answers an applied outcome or ``rejected``;
- a rejected record is dead-lettered, once, with its key and value and a reason, and the
  reason is a refusal, never the catch-all that an exception inside the apply path produces;
- an applied record shows in Postgres, and nothing refused is stored: no job breaks the
  policy, and no tenant is past its quota.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from core.db import create_pool
from core.quotas import Quotas
from core.secrets import SecretBox
from core.settings import (
    DatabaseSettings,
    KafkaSettings,
    QuotaLimits,
    SchedulerSettings,
    SecuritySettings,
    TargetSettings,
)
from scheduler.commands import CommandHandler
from scheduler.daily_budget import DailyBudget
from scheduler.firing import Dispatcher
from scheduler.kafka_io import ProducerSender
from scheduler.records import Record
from scheduler.shards import Shards
from schemas.v1.commands import CreateCommand, decode_command
from schemas.v1.target_policy import check_target
from tests.conftest import RUN_ID, fresh_database
from tests.fuzz.test_command_decoding_fuzz import HOSTILE, _hostile_for, _locate, _paths, names
from topics.admin import create_topics
from topics.catalog import Catalog, catalog
from topics.dlq import REASON
from topics.partitioner import partition_for
from topics.producer import durable_producer

pytestmark = pytest.mark.services

PLAIN, TWO_ACTIVE, BURST, SMALL, DAILY = "fz-plain", "fz-two", "fz-burst", "fz-small", "fz-daily"
LIMITS = {
    TWO_ACTIVE: QuotaLimits(active_jobs=2),
    BURST: QuotaLimits(submissions_per_s=0.001, burst=3),
    SMALL: QuotaLimits(payload_bytes=300),
    DAILY: QuotaLimits(executions_per_day=1),
}
SECURITY = SecuritySettings(
    quota_tiers={tenant: limits for tenant, limits in LIMITS.items()},
    quota_tenant_tiers={tenant: tenant for tenant in LIMITS},
    secret_keys=[SecretStr(Fernet.generate_key().decode())],
)
POLICY = TargetSettings(
    script_enabled=True,
    script_allowlist=["/bin/echo"],
    sql_connections={"main": SecretStr("postgresql://kjs@127.0.0.1:1/unused")},
    kafka_topic_allowlist=["orders"],
    max_timeout_s=600,
)
APPLIED = {"created", "duplicate", "cancelled", "paused", "resumed", "updated", "triggered"}
# The reason the handler gives when something inside the apply path raised (a bug).
CRASHED = "could not apply:"
ACTIVE = ("scheduled", "paused", "queued")


class SpySender:
    """The real producer, with a note of what was handed to it."""

    def __init__(self, inner: ProducerSender) -> None:
        self.inner = inner
        self.sent: list[tuple[str, bytes | None, bytes | None, dict[str, bytes]]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Any:
        self.sent.append((topic, key, value, dict(headers or ())))
        return await self.inner.send(topic, key, value, partition=partition, headers=headers)


@dataclass
class Applying:
    handler: CommandHandler
    pool: asyncpg.Pool
    catalog: Catalog
    sender: SpySender
    offsets: Iterator[int] = field(default_factory=itertools.count)
    # Jobs that exist, so that commands by id meet real jobs in every status.
    jobs: list[tuple[str, str]] = field(default_factory=list)  # (tenant, job_id)

    def record(self, key: bytes | None, value: bytes) -> Record:
        partitions = self.catalog.commands.partitions
        partition = partition_for(key, partitions) if key is not None else 0
        return Record(
            self.catalog.commands.name, partition, next(self.offsets), key, value, [], time.time()
        )


@pytest.fixture(scope="module")
async def applying(services: None, kafka_settings: KafkaSettings) -> AsyncIterator[Applying]:
    kafka = kafka_settings.model_copy(
        update={"namespace": f"{kafka_settings.namespace}fa{uuid.uuid4().hex[:6]}."}
    )
    cat = catalog(kafka)
    await create_topics(kafka, cat)
    async with fresh_database(f"kjs_test_{RUN_ID}_apply_fuzz_{uuid.uuid4().hex[:6]}") as dsn:
        pool = await create_pool(DatabaseSettings(), dsn=dsn)
        producer = durable_producer(kafka)
        await producer.start()
        sender = SpySender(ProducerSender(producer))
        quotas = Quotas(SECURITY)
        scheduler = SchedulerSettings()
        shards = Shards(pool, Dispatcher(pool, sender, cat), scheduler, "fuzz", DailyBudget(quotas))
        await shards.assign(range(cat.commands.partitions))
        handler = CommandHandler(
            shards,
            pool,
            sender,
            cat,
            scheduler,
            POLICY,
            quotas,
            SecretBox(SECURITY.secret_keys),
        )
        try:
            yield Applying(handler, pool, cat, sender)
        finally:
            await shards.stop()
            await producer.stop()
            await pool.close()


@pytest.fixture(autouse=True, scope="module")
def _quiet() -> Iterator[None]:
    """Every refused record logs a warning; hundreds of them would only slow the run."""
    logger = logging.getLogger("scheduler.deadletters")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


# --- strategies ---------------------------------------------------------------------------

tenants = st.sampled_from([PLAIN, TWO_ACTIVE, BURST, SMALL, DAILY])
KINDS = st.sampled_from(["create"] * 4 + ["cancel", "pause", "resume", "trigger", "update"])
# Seconds from now: the past beyond the grace, within it, the next seconds, far ahead.
offsets_s = st.sampled_from([-7200, -10, 2, 30, 86400 * 400])


def at(offset_s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


schedules = st.one_of(
    offsets_s.map(lambda s: {"type": "once", "at": at(s)}),
    st.fixed_dictionaries(
        {
            "type": st.just("cron"),
            "expression": st.sampled_from(["* * * * * *", "0 3 * * *", "30 2 29 2 *"]),
        },
        optional={
            "timezone": st.sampled_from(["UTC", "Europe/Berlin", "Australia/Lord_Howe"]),
            "end_at": offsets_s.map(at),
            "max_runs": st.integers(1, 3),
            "overlap": st.sampled_from(["allow", "forbid", "replace", "buffer_one"]),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("interval"), "every_seconds": st.sampled_from([0.5, 1, 60, 3600])},
        optional={
            "start_at": offsets_s.map(at),
            "jitter_s": st.sampled_from([0, 0.25]),
            "catchup": st.sampled_from(["none", "latest", "all"]),
        },
    ),
)
http_targets = st.fixed_dictionaries(
    {
        "type": st.just("http"),
        "url": st.sampled_from(
            [
                *["https://example.com/hook"] * 5,
                "http://127.0.0.1/hook",  # loopback: refused
                "http://10.1.2.3/hook",  # private: refused
                "http://169.254.169.254/latest/meta-data",  # cloud metadata: refused
                "http://[::1]:8080/",  # loopback: refused
            ]
        ),
    },
    optional={
        "method": st.sampled_from(["GET", "POST"]),
        "body": st.sampled_from([{"a": 1}, {"a": 1}, "x" * 500, {"token": "{{secrets.token}}"}]),
        "headers": st.sampled_from(
            [{"Authorization": "Bearer abc"}, {"X-Bad": "a\r\nb"}, {"X-Ok": "1"}, {"X-Ok": "1"}]
        ),
        "secrets": st.just({"token": "s3cr3t"}),
        "timeout_s": st.sampled_from([5, 5, 600, 7200]),
    },
)
targets = st.one_of(
    http_targets,
    http_targets,
    st.fixed_dictionaries(
        {
            "type": st.just("kafka"),
            "topic": st.sampled_from(["orders", "orders", "audit", "jobs.dlq"]),
        },
        optional={"value": st.sampled_from([{"n": 1}, "y" * 400])},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("sql"),
            "connection": st.sampled_from(["main", "main", "other"]),
            "statement": st.just("SELECT 1"),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("script"),
            "command": st.sampled_from(
                [["/bin/echo", "hi"], ["/bin/echo", "hi"], ["/bin/sh", "-c", "id"], ["echo"]]
            ),
        }
    ),
)


@dataclass(frozen=True)
class Ref:
    """A command about an existing job: which one (an index into the jobs created so far),
    and whether another tenant asks. Resolved by the test, outside the strategy: a strategy
    must not depend on state that changes from one example to the next."""

    pick: int
    other_tenant: bool


@st.composite
def commands(draw: st.DrawFn) -> tuple[dict[str, Any], Ref | None]:
    """A command of one of the tenants; by id, mostly about a job that exists (``Ref``)."""
    kind = draw(KINDS)
    ref = None
    if draw(st.integers(0, 3)) > 0:
        ref = Ref(draw(st.integers(0, 10_000)), draw(st.integers(0, 9)) == 0)
    tenant, job_id = draw(tenants), str(draw(st.uuids()))
    if kind == "create":
        job: dict[str, Any] = {
            "user_id": tenant,
            "name": draw(names),
            "schedule": draw(schedules),
            "target": draw(targets),
        }
        extra = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "priority": st.sampled_from(["critical", "normal", "low"]),
                    "idempotency_key": st.sampled_from(["k1", "k2"]),
                    "job_id": st.just(job_id),  # an existing job's, when there is a Ref
                },
            )
        )
        return {"type": "create", "job": {**job, **extra}}, ref
    command: dict[str, Any] = {"type": kind, "user_id": tenant, "job_id": job_id}
    if kind == "update":
        changes = {
            "name": names,
            "schedule": schedules,
            "target": targets,
            "priority": st.just("low"),
        }
        first = draw(st.sampled_from(sorted(changes)))
        command["changes"] = draw(
            st.fixed_dictionaries(
                {first: changes[first]}, optional={k: v for k, v in changes.items() if k != first}
            )
        )
    return command, ref


def resolve(document: dict[str, Any], ref: Ref | None, jobs: list[tuple[str, str]]) -> None:
    """Point a command at an existing job (in place): its id, and its tenant unless another
    tenant is asking. Strings for strings, so a later mutation draws the same way."""
    if ref is None or not jobs:
        return
    tenant, job_id = jobs[ref.pick % len(jobs)]
    if document["type"] == "create":
        if "job_id" in document["job"]:
            document["job"]["job_id"] = job_id
        return
    document["job_id"] = job_id
    if not ref.other_tenant:
        document["user_id"] = tenant


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> bytes:
    """The command as sent: a quarter of them with one hostile change somewhere inside."""
    if draw(st.integers(0, 3)) == 0:
        path = draw(st.sampled_from(list(_paths(document))))
        parent, key = _locate(document, path)
        parent[key] = draw(
            st.sampled_from(_hostile_for(key, parent[key])) | st.sampled_from(HOSTILE)
        )
    return json.dumps(document).encode("utf-8", "surrogatepass")


# --- the test -----------------------------------------------------------------------------


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_every_command_is_applied_or_dead_lettered_with_a_reason(
    applying: Applying, data: st.DataObject
) -> None:
    document, ref = data.draw(commands())
    resolve(document, ref, applying.jobs)
    user_id = document.get("user_id") or document["job"]["user_id"]
    key = user_id.encode()  # keyed by its tenant, as before any mutation
    value = data.draw(mutated(document))
    record = applying.record(key, value)
    before = len(applying.sender.sent)

    outcome = await applying.handler.handle(record)  # never raises

    event(outcome)
    dlq = applying.catalog.dlq.name
    letters = [s for s in applying.sender.sent[before:] if s[0] == dlq]
    if outcome == "rejected":
        assert len(letters) == 1, letters
        _, letter_key, letter_value, headers = letters[0]
        assert (letter_key, letter_value) == (key, value)
        reason = headers[REASON].decode()
        event(f"rejected: {reason.split(':', 1)[0]}")
        assert reason and not reason.startswith(CRASHED), reason
    else:
        assert outcome in APPLIED, outcome
        assert letters == []
        await _check_applied(applying, record, outcome)
    await _check_limits(applying)


async def _check_applied(applying: Applying, record: Record, outcome: str) -> None:
    command = decode_command(record.value or b"")
    if isinstance(command, CreateCommand):
        row = await applying.pool.fetchrow(
            "SELECT job_id, user_id, status, target FROM kjs_jobs WHERE source = $1",
            record.source,
        )
        if outcome == "duplicate":
            assert row is None, "a duplicate stored a job"
            return
        assert row is not None and row["user_id"] == command.user_id
        # Scheduled, or already fired by the shard's timer (a job due within the lead).
        assert row["status"] in ("scheduled", "queued"), row["status"]
        applying.jobs.append((command.user_id, str(row["job_id"])))
        # Nothing the operator's policy refuses is stored.
        reserved = {t.name for t in applying.catalog.all()}
        assert check_target(command.job.target, POLICY, reserved) == []
        return
    status = await applying.pool.fetchval(
        "SELECT status FROM kjs_jobs WHERE job_id = $1 AND user_id = $2",
        command.job_id,
        command.user_id,
    )
    # What the job is right after: the shard's timer may have fired it since (queued).
    expected = {
        "cancelled": {"cancelled"},
        "paused": {"paused"},
        "resumed": {"scheduled", "queued"},
        "updated": {"scheduled", "paused", "queued"},
        "triggered": {"scheduled", "paused", "queued", "succeeded", "failed"},
    }
    assert status in expected[outcome], (outcome, status)
    if outcome == "triggered":
        extra = await applying.pool.fetchval(
            "SELECT count(*) FROM kjs_executions WHERE job_id = $1 AND scheduled_for = due_at"
            " AND created_at >= now() - interval '1 minute'",
            command.job_id,
        )
        assert extra >= 1, "a trigger added no run"


async def _check_limits(applying: Applying) -> None:
    """No tenant is past a quota the shard enforces."""
    active = await applying.pool.fetchval(
        "SELECT count(*) FROM kjs_jobs WHERE user_id = $1 AND status = ANY($2::text[])",
        TWO_ACTIVE,
        list(ACTIVE),
    )
    assert active <= LIMITS[TWO_ACTIVE].active_jobs
    created = await applying.pool.fetchval(
        "SELECT count(*) FROM kjs_jobs WHERE user_id = $1", BURST
    )
    # The bucket starts full (burst) and refills at 0.001 per second: not one more in a run.
    assert created <= LIMITS[BURST].burst
    # Runs fired or triggered for the tenant with a daily budget (its trimmed runs are
    # recorded as 'skipped'), and the day's count the shard keeps: within the budget.
    ran = await applying.pool.fetchval(
        "SELECT count(*) FROM kjs_executions WHERE user_id = $1 AND attempt = 1"
        " AND status <> 'skipped'",
        DAILY,
    )
    used = await applying.pool.fetchval(
        "SELECT coalesce(max(executions), 0) FROM kjs_tenant_usage WHERE user_id = $1", DAILY
    )
    assert ran <= LIMITS[DAILY].executions_per_day and used <= LIMITS[DAILY].executions_per_day

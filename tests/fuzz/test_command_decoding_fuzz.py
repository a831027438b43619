"""Hostile input at the Kafka door: the scheduler's decoding of ``jobs.commands`` records, fuzzed.

Anyone who can produce to the submit topic can hand the scheduler any bytes. The decoding is
``scheduler.commands.CommandHandler.handle``: parse and validate the value (the contract's
``COMMAND`` adapter), check the key, and either apply the command or dead-letter the record
with a reason. It is driven here for real, with a recording sender and no services: a valid
record is put on a partition other than its key's, so the handler re-routes it (re-encoding
it, which is a round trip) instead of touching Postgres.

Three kinds of input: arbitrary bytes, arbitrary JSON, and valid commands with one hostile
mutation (an extra field, a wrong type, an oversize string, a huge or negative number, NaN or
Infinity, a far-past or far-future date, a bad cron, odd unicode, deep nesting). Properties:

- nothing escapes ``handle``, and a record is refused only for a reason the decoding gives
  (never the catch-all "could not apply", which is how a crash inside it would show);
- an accepted command round-trips, re-validates strictly, satisfies the exported JSON Schema,
  stays within the contract's bounds, and can be scheduled (its first run computes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from core.settings import KafkaSettings, SchedulerSettings
from scheduler.commands import CommandHandler
from scheduler.records import Record
from scheduler.shards import Shards
from schemas.v1.commands import COMMAND, AnyCommand, CreateCommand, UpdateCommand, decode_command
from schemas.v1.jobs import SubmittedJob
from schemas.v1.schedules import EARLIEST, LATEST, OnceSchedule
from schemas.v1.targets import MAX_JSON_DEPTH
from tests.support.senders import RecordingSender
from timetable.occurrences import first_run
from topics.catalog import Catalog, catalog
from topics.dlq import REASON
from topics.partitioner import partition_for

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The reasons the decoding gives for a record it refuses (scheduler.commands).
DECODING_REASONS = re.compile(r"^(empty value|invalid command: |record key )")
USER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
COMMAND_SCHEMA = jsonschema_rs.validator_for(
    json.loads((Path(__file__).parents[2] / "schemas/json/v1.command.schema.json").read_text()),
    validate_formats=True,
)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def topics() -> Catalog:
    return catalog(KafkaSettings(namespace="fuzz.", command_partitions=3, due_partitions=3))


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    """Every refused record logs a warning; thousands of them would only slow the run."""
    logger = logging.getLogger("scheduler.deadletters")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def decode(
    loop: asyncio.AbstractEventLoop, topics: Catalog, value: bytes | None, key: bytes | None
) -> tuple[str, RecordingSender]:
    """Hand one record to the scheduler's command handler; (outcome, what it sent)."""
    sender = RecordingSender()
    handler = CommandHandler(
        # Owning none: it routes by the configured count, and a re-routed or refused record
        # never reaches a shard.
        shards=Shards(cast(Any, None), cast(Any, None), SchedulerSettings(), "fuzz"),
        pool=cast(Any, None),
        sender=sender,
        catalog=topics,
        settings=SchedulerSettings(),
    )
    partitions = topics.commands.partitions
    home = partition_for(key, partitions) if key is not None else 0
    record = Record(topics.commands.name, (home + 1) % partitions, 7, key, value)
    outcome = loop.run_until_complete(handler.handle(record))
    return outcome, sender


def check_outcome(outcome: str, sender: RecordingSender, topics: Catalog) -> AnyCommand | None:
    """The command the handler accepted (re-routed), or None for a well-refused record."""
    assert len(sender.sent) == 1, sender.sent
    topic, _key, value, headers = sender.sent[0]
    if outcome == "rejected":
        assert topic == topics.dlq.name
        reason = headers[REASON].decode()
        assert DECODING_REASONS.match(reason), f"not a decoding refusal: {reason}"
        return None
    assert outcome == "rerouted", outcome
    assert topic == topics.commands.name and value is not None
    return COMMAND.validate_json(value)


def check_contract(command: AnyCommand) -> None:
    """What an accepted command must satisfy, whatever the input was."""
    dumped = command.model_dump_json()
    # Round trip, and strictly: the canonical form needs no coercion.
    assert COMMAND.validate_json(dumped) == command
    assert COMMAND.validate_json(dumped, strict=True) == command
    # The exported contract (what non-Python producers validate against) holds it too.
    document = json.loads(dumped, parse_constant=_no_constants)
    COMMAND_SCHEMA.validate(document)
    assert USER_ID.match(command.user_id)
    _check_values(document, depth=0)
    job = _job_of(command)
    if job is None:
        return
    schedule = job.schedule
    if schedule is None:
        return
    for at in _instants(schedule):
        assert EARLIEST <= at < LATEST, at
    # Decoding accepted it, so scheduling it must not fail: the first run computes.
    first_run(schedule, NOW, anchor=NOW)


def _no_constants(name: str) -> Any:
    raise AssertionError(f"{name} in an accepted command")


def _check_values(value: Any, depth: int) -> None:
    assert depth <= MAX_JSON_DEPTH + 8, "nested deeper than the contract allows"
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, dict):
        for child in value.values():
            _check_values(child, depth + 1)
    elif isinstance(value, list):
        for child in value:
            _check_values(child, depth + 1)


def _job_of(command: AnyCommand) -> Any:
    if isinstance(command, CreateCommand):
        return command.job
    if isinstance(command, UpdateCommand):
        return command.changes
    return None


def _instants(schedule: BaseModel) -> Iterator[datetime]:
    if isinstance(schedule, OnceSchedule):
        yield schedule.at
        return
    for name in ("start_at", "end_at"):
        value = getattr(schedule, name, None)
        if value is not None:
            yield value


# --- strategies -------------------------------------------------------------------------

user_ids = st.text(string.ascii_letters + string.digits + "._:@-", min_size=1, max_size=20)
names = st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s)
instants = st.datetimes(
    min_value=datetime(2027, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.isoformat())
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)

schedules = st.one_of(
    st.fixed_dictionaries({"type": st.just("once"), "at": instants}),
    st.fixed_dictionaries(
        {
            "type": st.just("cron"),
            "expression": st.sampled_from(
                ["*/5 * * * *", "0 3 * * *", "30 2 * * 0", "0 0 29 2 *", "15 */2 * * * *"]
            ),
        },
        optional={
            "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
            "start_at": instants,
            "max_runs": st.integers(1, 100),
            "catchup": st.sampled_from(["none", "latest", "all"]),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("interval"), "every_seconds": st.floats(1, 86400)},
        optional={"max_catchup": st.integers(1, 1000), "overlap": st.just("forbid")},
    ),
)
targets = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("http"), "url": st.just("https://example.com/hook")},
        optional={
            "method": st.sampled_from(["GET", "POST"]),
            "body": json_values,
            "headers": st.dictionaries(
                st.text(string.ascii_letters, min_size=1, max_size=8), st.text(max_size=8)
            ),
            "timeout_s": st.floats(0.5, 3600),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("kafka"), "topic": st.just("orders")},
        optional={"key": st.text(max_size=8), "value": json_values},
    ),
    st.fixed_dictionaries(
        {"type": st.just("sql"), "connection": st.just("main"), "statement": st.just("SELECT 1")},
        optional={"params": st.lists(json_values, max_size=3)},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("script"),
            "command": st.lists(st.text(max_size=8), min_size=1, max_size=3),
        }
    ),
)
jobs = st.fixed_dictionaries(
    {"user_id": user_ids, "name": names, "schedule": schedules, "target": targets},
    optional={
        "priority": st.sampled_from(["critical", "normal", "low"]),
        "retry": st.fixed_dictionaries(
            {}, optional={"max_attempts": st.integers(1, 100), "max_delay_s": st.floats(0, 600)}
        ),
        "idempotency_key": st.text(min_size=1, max_size=20),
        "job_id": st.uuids().map(str),
    },
)
by_id = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["cancel", "trigger", "pause", "resume"]),
        "user_id": user_ids,
        "job_id": st.uuids().map(str),
    }
)
updates = st.fixed_dictionaries(
    {
        "type": st.just("update"),
        "user_id": user_ids,
        "job_id": st.uuids().map(str),
        "changes": st.one_of(
            st.fixed_dictionaries({"name": names}, optional={"schedule": schedules}),
            st.fixed_dictionaries({"schedule": schedules}, optional={"target": targets}),
            st.fixed_dictionaries({"target": targets}, optional={"priority": st.just("low")}),
        ),
    }
)
valid_commands = st.one_of(
    st.fixed_dictionaries({"type": st.just("create"), "job": jobs}), by_id, updates
)


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# Values that break a contract somewhere, or probe an edge of it, by the kind of field.
HOSTILE_NUMBERS: list[Any] = [
    0,
    -1,
    -(2**63) - 1,
    2**64,
    10**400,
    1e308,
    -1e308,
    5e-324,
    0.0001,
    math.nan,
    math.inf,
    -math.inf,
    "30",
    True,
    None,
]
HOSTILE_DATES: list[Any] = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59Z",
    "8999-12-31T23:59:59Z",
    "1969-12-31T23:59:59Z",
    "2030-01-01T00:00:00",
    "2030-02-30T00:00:00Z",
    "2030-01-01",
    "now",
    4102444800,
]
HOSTILE_CRONS: list[Any] = [
    "* * * * * * *",
    "0 0 31 2 *",
    "R * * * *",
    "@reboot",
    "*/0 * * * *",
    "0 0 L * *",
    "99999999999999999999 * * * *",
    "0 0 29 2 1",
    "59 59 23 31 12 *",
    "* * * * \x00",
]
HOSTILE_ZONES: list[Any] = ["Mars/Olympus_Mons", "localtime", "", "../../etc/passwd", "UTC\x00"]
HOSTILE_STRINGS: list[Any] = [
    "",
    "x" * 100_001,
    "\x00",
    "\ud800",
    "\u202e\ufeffcron",
    "\U0001d566\U0001d564",
    " ",
    "a\nb",
    1,
    None,
]
HOSTILE_STRUCTURES: list[Any] = [
    None,
    [],
    {},
    [1, "two", None],
    {"type": "once"},
    _deep(MAX_JSON_DEPTH + 1),
    _deep(150),
    {"a": [math.nan]},
    [math.inf],
]
HOSTILE = [
    *HOSTILE_NUMBERS,
    *HOSTILE_DATES,
    *HOSTILE_CRONS,
    *HOSTILE_ZONES,
    *HOSTILE_STRINGS,
    *HOSTILE_STRUCTURES,
]


def _hostile_for(key: Any, current: Any) -> list[Any]:
    if key in ("at", "start_at", "end_at"):
        return HOSTILE_DATES
    if key == "expression":
        return HOSTILE_CRONS
    if key == "timezone":
        return HOSTILE_ZONES
    if isinstance(current, int | float) and not isinstance(current, bool):
        return HOSTILE_NUMBERS
    if isinstance(current, str):
        return HOSTILE_STRINGS
    return HOSTILE_STRUCTURES


@st.composite
def mutated_commands(draw: st.DrawFn) -> str:
    """A valid command with one hostile change somewhere inside it."""
    document = draw(valid_commands)
    path = draw(st.sampled_from(list(_paths(document))))
    parent, key = _locate(document, path)
    action = draw(st.sampled_from(["replace", "replace", "replace", "extra", "delete"]))
    value = draw(
        st.one_of(
            st.sampled_from(_hostile_for(key, parent[key])),
            st.sampled_from(HOSTILE),
            json_values,
        )
    )
    if action == "replace" or not isinstance(parent, dict):
        parent[key] = value
    elif action == "extra":
        parent[draw(st.sampled_from(["extra", "versionx", "type ", "__proto__"]))] = value
    else:
        del parent[key]
    return json.dumps(document)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, child in items:
        yield (*prefix, key)
        if isinstance(child, dict | list) and child:
            yield from _paths(child, (*prefix, key))


def _locate(document: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
    node = document
    for key in path[:-1]:
        node = node[key]
    return node, path[-1]


# --- tests ------------------------------------------------------------------------------


@FUZZ
@given(value=st.binary(max_size=512), key=st.none() | st.binary(max_size=16))
@example(value=b"", key=b"u")
@example(value=b"\xff\xfe{", key=b"u")
@example(value=b"[" * 100_000, key=b"u")
def test_arbitrary_bytes_are_refused_with_a_reason(
    loop: asyncio.AbstractEventLoop, topics: Catalog, value: bytes, key: bytes | None
) -> None:
    outcome, sender = decode(loop, topics, value, key)
    event(outcome)
    command = check_outcome(outcome, sender, topics)
    if command is not None:
        check_contract(command)


@FUZZ
@given(document=json_values | valid_commands.map(lambda c: {**c, "job": None}))
def test_arbitrary_json_is_refused_with_a_reason(
    loop: asyncio.AbstractEventLoop, topics: Catalog, document: Any
) -> None:
    value = json.dumps(document).encode()
    outcome, sender = decode(loop, topics, value, b"u")
    event(outcome)
    command = check_outcome(outcome, sender, topics)
    if command is not None:
        check_contract(command)


@FUZZ
@given(command=valid_commands)
def test_a_valid_command_is_accepted_and_round_trips(
    loop: asyncio.AbstractEventLoop, topics: Catalog, command: dict[str, Any]
) -> None:
    value = json.dumps(command).encode()
    user_id = command["user_id"] if "user_id" in command else command["job"]["user_id"]
    outcome, sender = decode(loop, topics, value, user_id.encode())
    decoded = check_outcome(outcome, sender, topics)
    assert decoded is not None, sender.sent[0][3]
    check_contract(decoded)
    original = COMMAND.validate_json(value)
    if isinstance(original, CreateCommand) and original.job.job_id is None:
        # A re-routed create gets its id fixed first, so a repeated re-route is one job.
        assert isinstance(decoded, CreateCommand) and decoded.job.job_id is not None
        fixed = original.job.model_copy(update={"job_id": decoded.job.job_id})
        original = original.model_copy(update={"job": fixed})
    assert decoded == original


@settings(FUZZ, max_examples=1000)
@given(value=mutated_commands())
@example(value=json.dumps({"type": "create", "job": {"user_id": "u"}}))
def test_near_valid_commands_are_refused_or_satisfy_the_contract(
    loop: asyncio.AbstractEventLoop, topics: Catalog, value: str
) -> None:
    document = json.loads(value)
    user_id = document.get("user_id") if isinstance(document, dict) else None
    if user_id is None and isinstance(document.get("job"), dict):
        user_id = document["job"].get("user_id")
    key = user_id.encode("utf-8", "surrogatepass") if isinstance(user_id, str) else b"u"
    outcome, sender = decode(loop, topics, value.encode("utf-8", "surrogatepass"), key)
    event(outcome)
    command = check_outcome(outcome, sender, topics)
    if command is not None:
        check_contract(command)


@pytest.mark.parametrize(
    "change",
    [
        {"schedule": {"type": "once", "at": "0001-01-01T00:00:00+14:00"}},
        {"schedule": {"type": "once", "at": "9999-12-31T23:59:59-14:00"}},
        {"schedule": {"type": "interval", "every_seconds": 60, "start_at": "9999-12-31T23:00Z"}},
        {"schedule": {"type": "once", "at": "1969-12-31T23:59:59Z"}},
        {"target": {"type": "http", "url": "https://e.test", "body": _deep(MAX_JSON_DEPTH + 1)}},
        {"target": {"type": "kafka", "topic": "t", "value": {"a": [math.inf]}}},
        {"target": {"type": "sql", "connection": "c", "statement": "s", "params": [math.nan]}},
    ],
    ids=[
        "year-0-utc",
        "year-10000-utc",
        "start-at-end-of-time",
        "before-1970",
        "deep-body",
        "infinity-value",
        "nan-param",
    ],
)
def test_what_fuzzing_found_is_refused(
    loop: asyncio.AbstractEventLoop, topics: Catalog, change: dict[str, Any]
) -> None:
    """Each of these was accepted, and then crashed scheduling or changed on the way."""
    job = {
        "user_id": "u",
        "name": "n",
        "schedule": {"type": "interval", "every_seconds": 60},
        "target": {"type": "http", "url": "https://e.test"},
        **change,
    }
    value = json.dumps({"type": "create", "job": job}).encode()
    outcome, sender = decode(loop, topics, value, b"u")
    assert check_outcome(outcome, sender, topics) is None


def test_a_once_job_at_the_edges_of_the_range_is_accepted() -> None:
    for at in (EARLIEST, LATEST - timedelta(microseconds=1)):
        job = SubmittedJob.model_validate(
            {
                "user_id": "u",
                "name": "n",
                "schedule": {"type": "once", "at": at.isoformat()},
                "target": {"type": "http", "url": "https://e.test"},
            }
        )
        assert isinstance(job.schedule, OnceSchedule) and job.schedule.at == at


# Coercions the lenient decoding makes, which the exported JSON Schema forbids.
COERCED = [
    {"retry": {"max_attempts": True}},
    {"retry": {"initial_delay_s": "2"}},
    {"schedule": {"type": "once", "at": 4102444800}},
    {"schedule": {"type": "interval", "every_seconds": "60"}},
]


@settings(FUZZ, max_examples=1000)
@given(value=mutated_commands())
def test_the_strict_decoding_accepts_only_what_the_json_schema_allows(value: str) -> None:
    """``decode_command`` (strict) accepts nothing the exported schema refuses."""
    raw = value.encode("utf-8", "surrogatepass")
    try:
        command = decode_command(raw)
    except ValidationError:
        event("refused")
        return
    event("accepted")
    check_contract(command)
    # What was accepted was already valid as sent, not only after coercion.
    COMMAND_SCHEMA.validate(json.loads(value, parse_constant=_no_constants))


@pytest.mark.parametrize("change", COERCED, ids=["bool-int", "str-float", "epoch-at", "str-every"])
def test_the_strict_decoding_refuses_coerced_values(change: dict[str, Any]) -> None:
    job = {
        "user_id": "u",
        "name": "n",
        "schedule": {"type": "interval", "every_seconds": 60},
        "target": {"type": "http", "url": "https://e.test"},
        **change,
    }
    with pytest.raises(ValidationError):
        decode_command(json.dumps({"type": "create", "job": job}))
    assert COMMAND.validate_json(json.dumps({"type": "create", "job": job}))  # lenient takes it


@pytest.mark.parametrize("change", COERCED, ids=["bool-int", "str-float", "epoch-at", "str-every"])
def test_the_scheduler_refuses_coerced_values(
    loop: asyncio.AbstractEventLoop, topics: Catalog, change: dict[str, Any]
) -> None:
    job = {
        "user_id": "u",
        "name": "n",
        "schedule": {"type": "interval", "every_seconds": 60},
        "target": {"type": "http", "url": "https://e.test"},
        **change,
    }
    value = json.dumps({"type": "create", "job": job}).encode()
    outcome, sender = decode(loop, topics, value, b"u")
    assert check_outcome(outcome, sender, topics) is None

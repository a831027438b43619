"""Calendars and exclusions against the real Postgres and Kafka: a shard skips and records
excluded occurrences, copies a named calendar into the jobs that name it, and refuses an
unknown calendar or an exclusion of everything (dead letter); the API answers 422 for the
same, serves ``/v1/calendars``, and previews excluded occurrences.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from core.settings import KafkaSettings
from scheduler.commands import CommandHandler, Rejected, format_errors
from scheduler.records import Record
from schemas.v1.commands import AnyCommand, CreateCommand, UpdateCommand, decode_command
from schemas.v1.schedules import Exclude, Exclusions
from tests.integration.conftest import Client
from tests.integration.scheduler_harness import ShardHarness, shard_harness, utc
from tests.integration.test_api_submit import _insert_job, commands_for, job_body
from topics.catalog import Catalog

pytestmark = pytest.mark.services

FRIDAY, SATURDAY, SUNDAY = "2030-01-11", "2030-01-12", "2030-01-13"
LEAD = timedelta(seconds=3)
WEEKENDS = {"cron": ["* * * * 0,6"]}


async def add_calendar(pool: asyncpg.Pool, user_id: str, name: str, rules: dict[str, Any]) -> None:
    await pool.execute(
        "INSERT INTO kjs_calendars (user_id, name, exclude) VALUES ($1, $2, $3)",
        user_id,
        name,
        rules,
    )


async def test_an_excluded_occurrence_is_skipped_and_recorded_with_its_rule(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    async with shard_harness(pool, kafka_settings, start=utc(FRIDAY, "08:00:00")) as h:
        job = await h.add_job(
            user_id, {"type": "cron", "expression": "0 9 * * *", "exclude": WEEKENDS}
        )
        await h.at(utc(FRIDAY, "09:00:00") - LEAD)
        await h.at(utc(SATURDAY, "09:00:00") - LEAD)
        await h.at(utc(SUNDAY, "09:00:00") - LEAD)

        rows = await pool.fetch(
            "SELECT scheduled_for, status, error FROM kjs_executions WHERE job_id = $1"
            " ORDER BY scheduled_for",
            job,
        )
        reason = "excluded: exclude, cron '* * * * 0,6'"
        assert [(r["scheduled_for"], r["status"], r["error"]) for r in rows] == [
            (utc(FRIDAY, "09:00:00"), "queued", None),
            (utc(SATURDAY, "09:00:00"), "skipped", reason),
            (utc(SUNDAY, "09:00:00"), "skipped", reason),
        ]
        assert (await h.job(job))["next_run_at"] == utc("2030-01-14", "09:00:00")
        skipped = await pool.fetchval("SELECT skipped_runs FROM kjs_jobs WHERE job_id = $1", job)
        assert skipped == 2
        assert [e.scheduled_for for e in h.due_events(job)] in ([], [utc(FRIDAY, "09:00:00")])


def create(user_id: str, exclude: dict[str, Any], expression: str = "0 9 * * *") -> CreateCommand:
    return CreateCommand.model_validate(
        {
            "type": "create",
            "job": {
                "user_id": user_id,
                "job_id": str(uuid.uuid4()),
                "name": "calendared",
                "schedule": {"type": "cron", "expression": expression, "exclude": exclude},
                "target": {"type": "kafka", "topic": "out"},
            },
        }
    )


async def apply(h: ShardHarness, command: AnyCommand) -> str:
    handler = CommandHandler(h.shards, h.pool, h.sender, h.catalog, h.settings, clock=h.clock)
    value = command.model_dump_json().encode()
    record = Record(h.catalog.commands.name, h.shard, 1, command.user_id.encode(), value)
    return await handler._apply(command, record)


async def test_the_shard_copies_a_named_calendar_into_the_job(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    await add_calendar(pool, user_id, "weekends", WEEKENDS)
    async with shard_harness(pool, kafka_settings, start=utc(FRIDAY, "08:00:00")) as h:
        command = create(user_id, {"calendars": ["weekends"]})
        assert await apply(h, command) == "created"
        stored = await pool.fetchval(
            "SELECT schedule FROM kjs_jobs WHERE job_id = $1", command.job.job_id
        )
        assert stored["exclude"]["calendars"] == ["weekends"]
        assert stored["exclude"]["resolved"] == {"weekends": {"dates": [], **WEEKENDS}}

        # Deleting the calendar changes no stored job: it holds its copy.
        await pool.execute("DELETE FROM kjs_calendars WHERE user_id = $1", user_id)
        await h.at(utc(SATURDAY, "09:00:00") - LEAD)
        rows = await h.executions(command.job.job_id)  # type: ignore[arg-type]
        assert [(r["scheduled_for"], r["status"]) for r in rows] == [
            (utc(FRIDAY, "09:00:00"), "queued"),
            (utc(SATURDAY, "09:00:00"), "skipped"),
        ]


@pytest.mark.parametrize(
    ("exclude", "reason"),
    [
        ({"calendars": ["nope"]}, "schedule.exclude.calendars: unknown calendar: 'nope'"),
        ({"cron": ["* * * * *"]}, "schedule.exclude: excludes every occurrence"),
        (
            {"dates": [{"from": "2030-01-01", "to": "2031-12-31"}]},
            "schedule.exclude: excludes every occurrence",
        ),
    ],
)
async def test_the_shard_refuses_an_unknown_calendar_or_an_exclusion_of_everything(
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    user_id: str,
    exclude: dict[str, Any],
    reason: str,
) -> None:
    async with shard_harness(pool, kafka_settings, start=utc(FRIDAY, "08:00:00")) as h:
        command = create(user_id, exclude)
        with pytest.raises(Rejected) as refused:
            await apply(h, command)
        assert str(refused.value).startswith(reason), refused.value
        assert not await pool.fetchval(
            "SELECT count(*) FROM kjs_jobs WHERE job_id = $1", command.job.job_id
        )


async def test_an_update_copies_the_calendar_as_it_is_then(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    await add_calendar(pool, user_id, "weekends", WEEKENDS)
    async with shard_harness(pool, kafka_settings, start=utc(FRIDAY, "08:00:00")) as h:
        job = await h.add_job(user_id, {"type": "cron", "expression": "0 9 * * *"})
        schedule = {
            "type": "cron",
            "expression": "0 10 * * *",
            "exclude": {"calendars": ["weekends"]},
        }
        update = UpdateCommand.model_validate(
            {
                "type": "update",
                "user_id": user_id,
                "job_id": str(job),
                "changes": {"schedule": schedule},
            }
        )
        value = update.model_dump_json().encode()
        record = Record(h.catalog.commands.name, h.shard, 1, user_id.encode(), value)
        handler = CommandHandler(h.shards, h.pool, h.sender, h.catalog, h.settings, clock=h.clock)
        assert await handler._apply(update, record) == "updated"
        stored = await pool.fetchval("SELECT schedule FROM kjs_jobs WHERE job_id = $1", job)
        assert stored["exclude"]["resolved"] == {"weekends": {"dates": [], **WEEKENDS}}

        unknown = update.model_copy(
            update={
                "changes": update.changes.model_copy(
                    update={
                        "schedule": update.changes.schedule.model_copy(  # type: ignore[union-attr]
                            update={"exclude": Exclude(calendars=["nope"])}
                        )
                    }
                )
            }
        )
        with pytest.raises(Rejected, match="unknown calendar: 'nope'"):
            await handler._apply(unknown, record)


# -- HTTP ------------------------------------------------------------------------------------


async def test_calendars_are_created_listed_read_and_deleted(
    tenant_client: Client, user_id: str
) -> None:
    holidays = {"name": "us-holidays", "dates": [{"from": "2030-12-25", "to": "2030-12-25"}]}
    resp = await tenant_client.post("/v1/calendars", json=holidays)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert (created["user_id"], created["name"], created["dates"], created["cron"]) == (
        user_id,
        "us-holidays",
        holidays["dates"],
        [],
    )
    assert resp.headers["Location"] == "/v1/calendars/us-holidays"
    assert (await tenant_client.post("/v1/calendars", json=holidays)).status == 409
    assert (
        await tenant_client.post("/v1/calendars", json={"name": "weekends", **WEEKENDS})
    ).status == 201

    listed = await (await tenant_client.get("/v1/calendars")).json()
    assert [c["name"] for c in listed["calendars"]] == ["us-holidays", "weekends"]
    assert (await (await tenant_client.get("/v1/calendars/weekends")).json())["cron"] == WEEKENDS[
        "cron"
    ]

    assert (await tenant_client.delete("/v1/calendars/weekends")).status == 204
    assert (await tenant_client.get("/v1/calendars/weekends")).status == 404
    assert (await tenant_client.delete("/v1/calendars/weekends")).status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "bad name"}, "name"),
        ({"name": "x", "cron": ["not cron"]}, "cron.0"),
        ({"name": "x", "dates": [{"from": "2030-01-02", "to": "2030-01-01"}]}, "dates.0"),
        ({"name": "x", "holidays": []}, "holidays"),
    ],
)
async def test_a_bad_calendar_is_422_naming_the_field(
    tenant_client: Client, body: dict[str, Any], field: str
) -> None:
    resp = await tenant_client.post("/v1/calendars", json=body)
    assert resp.status == 422, await resp.text()
    assert [e["field"] for e in (await resp.json())["errors"]] == [field]


@pytest.mark.parametrize(
    ("exclude", "field", "message"),
    [
        ({"calendars": ["nope"]}, "schedule.exclude.calendars", "unknown calendar: 'nope'"),
        ({"cron": ["* * * * *"]}, "schedule.exclude", "excludes every occurrence"),
    ],
)
async def test_a_job_with_an_unknown_calendar_or_excluding_everything_is_422(
    tenant_client: Client,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
    exclude: dict[str, Any],
    field: str,
    message: str,
) -> None:
    schedule = {"type": "cron", "expression": "*/5 * * * *", "exclude": exclude}
    resp = await tenant_client.post("/v1/jobs", json=job_body(user_id, schedule=schedule))
    assert resp.status == 422, await resp.text()
    [error] = (await resp.json())["errors"]
    assert error["field"] == field and message in error["message"], error
    assert await commands_for(kafka_settings, topic_catalog, user_id) == []


async def test_a_job_naming_a_calendar_is_accepted(
    tenant_client: Client, kafka_settings: KafkaSettings, topic_catalog: Catalog, user_id: str
) -> None:
    assert (
        await tenant_client.post("/v1/calendars", json={"name": "weekends", **WEEKENDS})
    ).status == 201
    schedule = {"type": "cron", "expression": "0 9 * * *", "exclude": {"calendars": ["weekends"]}}
    resp = await tenant_client.post("/v1/jobs", json=job_body(user_id, schedule=schedule))
    assert resp.status == 202, await resp.text()
    [command] = await commands_for(kafka_settings, topic_catalog, user_id)
    # The command names the calendar; the owning shard copies its rules when it stores it.
    assert command.job.schedule.exclude.calendars == ["weekends"]


async def test_the_preview_shows_excluded_occurrences(tenant_client: Client, user_id: str) -> None:
    assert (
        await tenant_client.post("/v1/calendars", json={"name": "weekends", **WEEKENDS})
    ).status == 201
    body = {
        "schedule": {
            "type": "cron",
            "expression": "0 9 * * *",
            "timezone": "America/New_York",
            "exclude": {
                "calendars": ["weekends"],
                "dates": [{"from": "2030-01-14", "to": "2030-01-14"}],
            },
        },
        "from": datetime(2030, 1, 11, tzinfo=UTC).isoformat(),
        "count": 5,
    }
    resp = await tenant_client.post("/v1/schedules/preview", json=body)
    assert resp.status == 200, await resp.text()
    fires = [(f["local"][:10], f["excluded"]) for f in (await resp.json())["fires"]]
    assert fires == [
        ("2030-01-11", None),
        ("2030-01-12", "excluded: calendar weekends, cron '* * * * 0,6'"),
        ("2030-01-13", "excluded: calendar weekends, cron '* * * * 0,6'"),
        ("2030-01-14", "excluded: exclude, dates 2030-01-14 to 2030-01-14"),
        ("2030-01-15", None),
    ]

    body["schedule"]["exclude"] = {"calendars": ["nope"]}  # type: ignore[index]
    resp = await tenant_client.post("/v1/schedules/preview", json=body)
    assert resp.status == 422
    assert (await resp.json())["errors"][0]["field"] == "schedule.exclude.calendars"


async def test_an_update_to_an_unknown_calendar_is_422(
    tenant_client: Client,
    pool: asyncpg.Pool,
    kafka_settings: KafkaSettings,
    topic_catalog: Catalog,
    user_id: str,
) -> None:
    job_id = await _insert_job(pool, user_id, "scheduled")
    schedule = {"type": "interval", "every_seconds": 60, "exclude": {"calendars": ["nope"]}}
    resp = await tenant_client.patch(f"/v1/jobs/{job_id}", json={"schedule": schedule})
    assert resp.status == 422, await resp.text()
    [error] = (await resp.json())["errors"]
    assert error["field"] == "schedule.exclude.calendars", error
    assert await commands_for(kafka_settings, topic_catalog, user_id) == []


async def test_calendars_are_defined_and_deleted_over_kafka_once_each(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, user_id: str
) -> None:
    define = decode_command(
        json.dumps(
            {
                "type": "define_calendar",
                "user_id": user_id,
                "name": "holidays",
                "calendar": {"dates": [{"from": "2030-12-24", "to": "2030-12-26"}]},
            }
        )
    )
    other = define.model_copy(update={"calendar": Exclusions(cron=["* * * * 0,6"])})
    delete = decode_command(
        json.dumps({"type": "delete_calendar", "user_id": user_id, "name": "holidays"})
    )
    async with shard_harness(pool, kafka_settings, start=utc(FRIDAY, "08:00:00")) as h:
        assert await apply(h, define) == "defined"
        assert await apply(h, define) == "duplicate"  # a redelivery changes nothing
        with pytest.raises(Rejected, match="'holidays' exists already, with other rules"):
            await apply(h, other)
        stored = await pool.fetchval(
            "SELECT exclude FROM kjs_calendars WHERE user_id = $1 AND name = 'holidays'", user_id
        )
        assert stored == {"dates": [{"from": "2030-12-24", "to": "2030-12-26"}], "cron": []}
        # A job may name it now, as one defined over HTTP.
        assert await apply(h, create(user_id, {"calendars": ["holidays"]})) == "created"

        assert await apply(h, delete) == "deleted"
        assert await apply(h, delete) == "absent"
        assert (
            await pool.fetchval("SELECT count(*) FROM kjs_calendars WHERE user_id = $1", user_id)
            == 0
        )


@pytest.mark.parametrize(
    ("command", "field"),
    [
        ({"name": "bad name!", "calendar": {}}, "name"),
        ({"name": "c", "calendar": {"cron": ["61 * * * *"]}}, "calendar.cron.0"),
        (
            {"name": "c", "calendar": {"dates": [{"from": "2030-12-26", "to": "2030-12-24"}]}},
            "calendar.dates.0",
        ),
    ],
)
def test_a_bad_calendar_command_is_refused_naming_the_field(
    command: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        decode_command(json.dumps({"type": "define_calendar", "user_id": "u", **command}))
    assert field in format_errors(refused.value)

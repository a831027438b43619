"""Submission validation: each error names the field the client wrote, in dotted form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.errors import FieldError
from api.models import FieldErrorsBody, ListJobsQuery
from api.validation import parse_submission, validate_model
from schemas.v1.jobs import JobSubmission

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": "alice",
        "name": "ping",
        "schedule": {"type": "cron", "expression": "*/5 * * * *", "timezone": "Europe/Berlin"},
        "target": {"type": "http", "method": "POST", "url": "http://example.test/hook"},
    }
    body.update(changes)
    return body


def _fields(body: Any) -> dict[str, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(FieldError) as caught:
        parse_submission(raw, now=NOW, grace=GRACE)
    return dict(caught.value.errors)


def test_a_valid_body_parses() -> None:
    spec = parse_submission(json.dumps(_body()).encode(), now=NOW, grace=GRACE)
    assert isinstance(spec, JobSubmission)
    assert spec.user_id == _body()["user_id"]
    assert spec.priority == "normal"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"schedule": {"type": "cron", "expression": "every day"}}, "schedule.expression"),
        (
            {"schedule": {"type": "cron", "expression": "* * * * *", "timezone": "Mars/Olympus"}},
            "schedule.timezone",
        ),
        ({"schedule": {"type": "weekly"}}, "schedule.type"),
        ({"schedule": {"expression": "* * * * *"}}, "schedule.type"),
        ({"schedule": {"type": "once"}}, "schedule.at"),
        ({"schedule": {"type": "interval", "every_seconds": 0}}, "schedule.every_seconds"),
        ({"target": {"type": "ftp", "url": "ftp://x"}}, "target.type"),
        ({"target": {"type": "http", "url": "not a url"}}, "target.url"),
        ({"target": {"type": "script", "command": ["ok", 7]}}, "target.command.1"),
        ({"priority": "urgent"}, "priority"),
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts"),
        ({"concurrency": {"key": "k", "limit": 0}}, "concurrency.limit"),
        ({"concurrency": {"key": "k" * 129, "limit": 3}}, "concurrency.key"),
        ({"concurrency": {"key": "k"}}, "concurrency.limit"),
        ({"surprise": True}, "surprise"),
        ({"user_id": "has spaces"}, "user_id"),
        ({"job_id": "5f1e5b4e-7c1a-4c6e-9d2f-0b9f7c7a1e11"}, "job_id"),
    ],
)
def test_each_invalid_field_is_named(changes: dict[str, Any], field: str) -> None:
    assert field in _fields(_body(**changes))


def test_a_missing_required_field_is_named() -> None:
    body = _body()
    del body["name"]
    assert _fields(body) == {"name": "Field required"}


def test_every_error_is_reported_at_once() -> None:
    body = _body(schedule={"type": "cron", "expression": "bad"}, target={"type": "ftp"})
    assert set(_fields(body)) == {"schedule.expression", "target.type"}


def test_the_value_error_prefix_is_not_shown() -> None:
    message = _fields(_body(schedule={"type": "cron", "expression": "bad"}))["schedule.expression"]
    assert message.startswith("not a valid")


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b"{'single': 'quotes'}"])
def test_malformed_json_names_the_body(raw: bytes) -> None:
    assert set(_fields(raw)) == {"body"}


@pytest.mark.parametrize("body", [[1, 2], "a string", None])
def test_a_body_that_is_not_an_object_names_the_body(body: Any) -> None:
    assert set(_fields(body)) == {"body"}


def test_a_once_time_beyond_the_grace_is_refused() -> None:
    at = (NOW - GRACE - timedelta(seconds=1)).isoformat()
    fields = _fields(_body(schedule={"type": "once", "at": at}))
    assert list(fields) == ["schedule.at"]
    assert "in the past" in fields["schedule.at"]


def test_a_once_time_within_the_grace_is_accepted() -> None:
    at = (NOW - GRACE + timedelta(seconds=1)).isoformat()
    spec = parse_submission(
        json.dumps(_body(schedule={"type": "once", "at": at})).encode(), now=NOW, grace=GRACE
    )
    assert spec.schedule.type == "once"


def test_a_once_time_without_offset_is_refused() -> None:
    assert "schedule.at" in _fields(_body(schedule={"type": "once", "at": "2025-06-01T12:00:00"}))


def test_query_errors_use_the_same_shape() -> None:
    with pytest.raises(FieldError) as caught:
        validate_model(
            ListJobsQuery, {"user_id": "a b", "limit": "501", "cursor": "garbage", "statuss": "x"}
        )
    fields = dict(caught.value.errors)
    assert set(fields) == {"user_id", "limit", "cursor", "statuss"}


def test_the_error_body_matches_its_documented_model() -> None:
    error = FieldError([("schedule.expression", "bad"), ("target.type", "unknown")])
    parsed = FieldErrorsBody.model_validate(error.body())
    assert [e.field for e in parsed.errors] == ["schedule.expression", "target.type"]

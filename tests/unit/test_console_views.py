"""What the console's pages compute: outcomes, lateness, fire times with DST marked, which
actions a status allows (the API's own rules), and the lag chart."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.handlers_lifecycle import ALLOWED_FROM
from console.chart import lag_chart
from console.views import allowed, exit_code, fire_rows, outcome, run_row
from schemas.v1.schedules import CronSchedule
from timetable.preview import preview

T0 = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)


def execution(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "execution_id": uuid.uuid4(),
        "scheduled_for": T0,
        "attempt": 1,
        "lane": "normal",
        "status": "succeeded",
        "dispatched_at": T0,
        "started_at": T0 + timedelta(milliseconds=40),
        "finished_at": T0 + timedelta(seconds=2),
        "worker": "w-1",
        "http_status": 200,
        "output_excerpt": "ok",
        "error": None,
        "due_at": None,
    }
    return {**row, **fields}


def test_a_run_shows_its_lateness_duration_and_http_status() -> None:
    run = run_row(execution())
    assert (run.lateness, run.duration, run.code) == ("0.040s", "1.960s", "HTTP 200")
    assert outcome(run.e) == "succeeded, HTTP 200"


def test_a_retry_is_late_from_the_end_of_its_backoff() -> None:
    due = T0 + timedelta(seconds=30)
    run = run_row(execution(attempt=2, due_at=due, started_at=due + timedelta(seconds=1)))
    assert run.lateness == "1.000s"


def test_a_script_shows_its_exit_code_and_a_queued_run_nothing_yet() -> None:
    excerpt = json.dumps({"exit_code": 3, "stdout": "", "stderr": "boom"})
    run = run_row(execution(http_status=None, status="failed", output_excerpt=excerpt))
    assert run.code == "exit 3"
    queued = run_row(
        execution(status="queued", started_at=None, finished_at=None, worker=None, http_status=None)
    )
    assert (queued.lateness, queued.duration, queued.code) == ("-", "-", "-")


@pytest.mark.parametrize("excerpt", [None, "", "plain text", "{not json", '{"exit_code": true}'])
def test_no_exit_code_is_made_up(excerpt: str | None) -> None:
    assert exit_code(excerpt) is None


def test_fire_times_mark_the_clock_change_and_the_missing_hour() -> None:
    cron = CronSchedule(type="cron", expression="30 2 * * *", timezone="Europe/Berlin")
    rows = fire_rows(preview(cron, T0, 3), offset_before="+01:00")
    assert [r.offset for r in rows] == ["+02:00", "+02:00", "+02:00"]
    assert rows[0].note == (
        "DST: clocks change, +01:00 -> +02:00; 02:30:00 does not exist that day (DST gap): moved"
    )
    assert rows[1].note == rows[2].note == ""


def test_fire_times_mark_the_repeated_hour() -> None:
    cron = CronSchedule(
        type="cron", expression="30 2 * * *", timezone="Europe/Berlin", dst={"fold": "both"}
    )
    rows = fire_rows(preview(cron, datetime(2026, 10, 24, 12, tzinfo=UTC), 3), "+02:00")
    assert [r.note for r in rows] == [
        "",
        "DST: clocks change, +02:00 -> +01:00; the repeated hour's second pass (DST)",
        "",
    ]


@pytest.mark.parametrize("status", ["scheduled", "paused", "queued", "running", "succeeded",
                                    "failed", "cancelled"])  # fmt: skip
def test_the_buttons_follow_the_apis_rules(status: str) -> None:
    stored = "queued" if status == "running" else status
    for action, starts in ALLOWED_FROM.items():
        assert allowed(action, status) == (stored in starts)
    assert allowed("cancel", status) == (status not in ("succeeded", "failed", "cancelled"))


def test_the_chart_draws_the_points_scaled_to_the_window() -> None:
    svg = lag_chart([(0.0, 0.0), (50.0, 10.0), (100.0, 5.0)], 0.0, 100.0, "lag <of> group")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'points="2.0,46.0 120.0,2.0 238.0,24.0"' in svg
    assert "<title>lag &lt;of&gt; group</title>" in svg
    assert ">max 10<" in svg
    assert "style=" not in svg and "<script" not in svg  # the CSP allows neither inline


def test_an_empty_or_single_point_chart() -> None:
    assert "polyline" not in lag_chart([], 0.0, 100.0, "x")
    assert "<circle" in lag_chart([(100.0, 3.0)], 0.0, 100.0, "x")
    assert ">max 2.5k<" in lag_chart([(1.0, 2500.0), (2.0, 0.0)], 0.0, 2.0, "x")

"""POST /v1/schedules/preview against the real app (no services needed beyond the app)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.errors import error_middleware
from api.handlers_schedules import preview_schedule


@pytest.fixture
async def client() -> Any:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/v1/schedules/preview", preview_schedule)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_preview_shows_a_spring_gap_shift_in_berlin(client: TestClient) -> None:
    body = {
        "schedule": {"type": "cron", "expression": "30 2 * * *", "timezone": "Europe/Berlin"},
        "from": "2026-03-28T12:00:00Z",
        "count": 2,
    }
    resp = await client.post("/v1/schedules/preview", json=body)
    assert resp.status == 200
    answer = await resp.json()
    assert answer["timezone"] == "Europe/Berlin"
    fires = answer["fires"]
    # 02:30 does not exist on 2026-03-29 (02:00 -> 03:00): shifted to 03:30 CEST = 01:30Z.
    # Expected values written out by hand, not taken from the answer.
    assert fires[0]["utc"].startswith("2026-03-29T01:30:00")
    assert fires[0]["shifted"] is True and fires[0]["offset"] == "+02:00"
    assert fires[1]["utc"].startswith("2026-03-30T00:30:00")
    assert fires[1]["shifted"] is False
    assert [datetime.fromisoformat(f["local"]) for f in fires] == [
        datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 3, 30, 2, 30, tzinfo=timezone(timedelta(hours=2))),
    ]
    assert [f["local"][:19] for f in fires] == ["2026-03-29T03:30:00", "2026-03-30T02:30:00"]
    assert [f["nominal"] for f in fires] == ["2026-03-29T02:30:00", "2026-03-30T02:30:00"]


async def test_preview_names_the_bad_field(client: TestClient) -> None:
    body = {
        "schedule": {"type": "cron", "expression": "61 * * * *"},
        "from": "2026-01-01T00:00:00Z",
    }
    resp = await client.post("/v1/schedules/preview", json=body)
    assert resp.status == 422
    errors = (await resp.json())["errors"]
    assert any("expression" in e["field"] for e in errors)

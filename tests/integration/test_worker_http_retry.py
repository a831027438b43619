"""How the http runner classifies answers of a real local server: retryable or not,
Retry-After read into seconds, and the job's own success statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from uuid import uuid4

import pytest
from aiohttp import web

from schemas.v1.addresses import AddressGuard
from schemas.v1.targets import HttpTarget
from workers.targets.base import Attempt, Outcome
from workers.targets.http import HttpRunner
from workers.targets.http_client import HttpClient

ATTEMPT = Attempt(execution_id=uuid4(), job_id=uuid4(), user_id="u-1", attempt=1)


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    """``/status/{code}?retry_after=...`` answers that status with that header."""

    async def answer(request: web.Request) -> web.Response:
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        return web.Response(status=int(request.match_info["code"]), text="busy", headers=headers)

    app = web.Application()
    app.router.add_route("*", "/status/{code}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[HttpRunner]:
    guard = AddressGuard.from_allowlist(["127.0.0.1"])
    client = HttpClient(guard)
    yield HttpRunner(client, 64)
    await client.close()


async def call(http: HttpRunner, url: str, **fields: Any) -> Outcome:
    return await http(HttpTarget(type="http", method="GET", url=url, **fields), ATTEMPT)


async def test_a_503_with_delta_seconds_is_retryable_after_that_long(
    http: HttpRunner, base_url: str
) -> None:
    outcome = await call(http, f"{base_url}/status/503?retry_after=7")
    assert (outcome.succeeded, outcome.retryable, outcome.http_status) == (False, True, 503)
    assert outcome.retry_after_s == 7.0
    assert outcome.output_excerpt == "busy"


async def test_a_429_with_an_http_date_is_read_relative_to_now(
    http: HttpRunner, base_url: str
) -> None:
    at = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    outcome = await call(http, f"{base_url}/status/429?retry_after={at}")
    assert outcome.retryable
    assert outcome.retry_after_s is not None and 3500 < outcome.retry_after_s <= 3600


async def test_retry_after_on_other_statuses_is_not_taken(http: HttpRunner, base_url: str) -> None:
    outcome = await call(http, f"{base_url}/status/500?retry_after=7")
    assert (outcome.retryable, outcome.retry_after_s) == (True, None)


@pytest.mark.parametrize("code", [400, 401, 404, 409, 422])
async def test_other_4xx_are_not_retried(http: HttpRunner, base_url: str, code: int) -> None:
    outcome = await call(http, f"{base_url}/status/{code}?retry_after=7")
    assert (outcome.succeeded, outcome.retryable, outcome.error) == (False, False, f"HTTP {code}")
    assert outcome.retry_after_s is None


async def test_a_refused_connection_is_retryable(http: HttpRunner) -> None:
    outcome = await call(http, "http://127.0.0.1:1/nothing-listens")
    assert (outcome.succeeded, outcome.retryable, outcome.http_status) == (False, True, None)


async def test_a_jobs_success_statuses_replace_any_2xx(http: HttpRunner, base_url: str) -> None:
    gone = await call(http, f"{base_url}/status/410", success_statuses=[410])
    assert (gone.succeeded, gone.http_status) == (True, 410)
    ok = await call(http, f"{base_url}/status/200", success_statuses=[410])
    assert (ok.succeeded, ok.retryable, ok.error) == (False, False, "HTTP 200")

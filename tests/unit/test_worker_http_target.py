"""The http runner against a real local HTTP server: what is sent, and how results map."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import pytest
from aiohttp import web

from schemas.v1.addresses import AddressGuard
from schemas.v1.targets import HttpTarget
from workers.targets import Attempt
from workers.targets.http import HttpRunner, excerpt
from workers.targets.http_client import HttpClient

# The local test server is on loopback, which the SSRF guard refuses unless allowed.
LOCAL = AddressGuard.from_allowlist(["127.0.0.1"])
ATTEMPT = Attempt(execution_id=uuid4(), job_id=uuid4(), user_id="u-1", attempt=1)


@dataclass
class Seen:
    method: str
    headers: dict[str, str]
    body: bytes


@dataclass
class TargetServer:
    base: str
    seen: list[Seen] = field(default_factory=list)
    # Holds the slow handler until teardown, so the test does not wait for a fixed time.
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def server() -> AsyncIterator[TargetServer]:
    state = TargetServer(base="")

    async def record(request: web.Request) -> web.StreamResponse:
        state.seen.append(Seen(request.method, dict(request.headers), await request.read()))
        path = request.match_info["what"]
        if path == "big":
            return web.Response(text="é" * 5000)
        if path == "chunked":
            response = web.StreamResponse()
            await response.prepare(request)
            for part in (b"first ", b"second ", b"third"):
                await response.write(part)
                await asyncio.sleep(0)
            await response.write_eof()
            return response
        if path == "slow":
            await state.release.wait()
        if path.isdigit():
            return web.Response(status=int(path), text=f"status {path}")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{what}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.base = f"http://127.0.0.1:{port}"
    yield state
    state.release.set()
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[HttpClient]:
    client = HttpClient(LOCAL)
    yield client
    await client.close()


def target(url: str, **fields: Any) -> HttpTarget:
    return HttpTarget.model_validate({"type": "http", "url": url, **fields})


async def test_sends_the_execution_id_as_idempotency_key_over_the_jobs_own(
    server: TargetServer, session: HttpClient
) -> None:
    headers = {"idempotency-key": "mine", "X-Job": "1"}
    outcome = await HttpRunner(session, 100)(target(f"{server.base}/ok", headers=headers), ATTEMPT)
    assert outcome.succeeded and outcome.http_status == 200 and outcome.output_excerpt == "ok"
    (seen,) = server.seen
    assert seen.headers["Idempotency-Key"] == str(ATTEMPT.execution_id)
    assert seen.headers["X-Job"] == "1"


async def test_a_json_body_is_sent_as_json_and_a_string_as_it_is(
    server: TargetServer, session: HttpClient
) -> None:
    run = HttpRunner(session, 100)
    await run(target(f"{server.base}/ok", body={"a": [1, 2]}), ATTEMPT)
    await run(target(f"{server.base}/ok", body="a=1&b=2"), ATTEMPT)
    await run(target(f"{server.base}/ok", method="GET"), ATTEMPT)
    as_json, as_text, empty = server.seen
    assert as_json.headers["Content-Type"] == "application/json"
    assert as_json.body == b'{"a": [1, 2]}'
    assert as_text.body == b"a=1&b=2"
    assert (empty.method, empty.body) == ("GET", b"")


async def test_the_output_excerpt_is_bounded_and_never_cuts_a_character(
    server: TargetServer, session: HttpClient
) -> None:
    outcome = await HttpRunner(session, 101)(target(f"{server.base}/big"), ATTEMPT)
    # 101 bytes hold fifty 2-byte characters; the cut half of the 51st is left out.
    assert outcome.output_excerpt == "é" * 50


async def test_the_excerpt_is_gathered_across_chunks(
    server: TargetServer, session: HttpClient
) -> None:
    outcome = await HttpRunner(session, 15)(target(f"{server.base}/chunked"), ATTEMPT)
    assert outcome.output_excerpt == "first second th"


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (404, False), (400, False)]
)
async def test_non_2xx_fails_and_only_transient_statuses_are_retryable(
    server: TargetServer, session: HttpClient, status: int, retryable: bool
) -> None:
    outcome = await HttpRunner(session, 100)(target(f"{server.base}/{status}"), ATTEMPT)
    assert not outcome.succeeded
    assert (outcome.http_status, outcome.retryable) == (status, retryable)
    assert outcome.error == f"HTTP {status}"
    assert outcome.output_excerpt == f"status {status}"


async def test_a_timeout_fails_retryably(server: TargetServer, session: HttpClient) -> None:
    outcome = await HttpRunner(session, 100)(target(f"{server.base}/slow", timeout_s=0.2), ATTEMPT)
    assert not outcome.succeeded and outcome.retryable
    assert outcome.error == "timed out after 0.2 s"
    assert outcome.http_status is None


async def test_a_refused_connection_fails_retryably(session: HttpClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens there any more.
    outcome = await HttpRunner(session, 100)(target(f"http://127.0.0.1:{port}/x"), ATTEMPT)
    assert not outcome.succeeded and outcome.retryable
    assert outcome.error is not None and outcome.error.startswith(
        f"cannot connect to 127.0.0.1:{port}"
    )


def test_excerpt_replaces_invalid_bytes() -> None:
    assert excerpt(b"ok\xff!") == "ok\ufffd!"

"""The worker's HTTP client against raw servers on loopback that answer exactly as each test
writes: keep-alive reuse, a server closing an idle connection, excerpts, chunks, HEAD, bodies
ended by the connection, and answers the client must refuse."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from uuid import uuid4

import pytest
import uvloop
from yarl import URL

from schemas.v1.addresses import AddressGuard
from schemas.v1.targets import HttpTarget
from workers.targets import Attempt
from workers.targets.http import HttpRunner
from workers.targets.http_client import HttpClient, HttpError, InvalidRequest, request_bytes

GUARD = AddressGuard.from_allowlist(["127.0.0.1"])
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    url: str = ""
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader, server: Server) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    server.requests.append(head)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            server.requests[-1] += await reader.readexactly(int(line.split(b":")[1]))
    return head


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> Server:
        state = Server()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            try:
                await handler(reader, writer, state)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return state

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    c = HttpClient(GUARD)
    yield c
    await c.close()


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
    while True:
        await read_request(reader, s)
        writer.write(OK)
        await writer.drain()


async def test_requests_to_one_origin_reuse_a_kept_alive_connection(
    serve: Callable[[Handler], Awaitable[Server]], client: HttpClient
) -> None:
    server = await serve(keep_alive)
    for _ in range(3):
        response = await client.request("GET", URL(f"{server.url}/a"), {}, None, excerpt_bytes=10)
        assert (response.status, response.excerpt) == (200, b"ok")
    assert server.connections == 1 and len(server.requests) == 3


async def test_a_reused_connection_the_server_dropped_unanswered_is_retried_once_on_a_new_one(
    serve: Callable[[Handler], Awaitable[Server]], client: HttpClient
) -> None:
    async def answers_once(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await read_request(reader, s)
        writer.write(OK)
        await writer.drain()
        await read_request(reader, s)  # read, then closed unanswered (an idle timeout's race)

    server = await serve(answers_once)
    first = await client.request("GET", URL(f"{server.url}/1"), {}, None, excerpt_bytes=10)
    second = await client.request("GET", URL(f"{server.url}/2"), {}, None, excerpt_bytes=10)
    assert (first.status, second.status) == (200, 200)
    assert server.connections == 2


async def test_a_connection_that_fails_mid_answer_is_not_retried(
    serve: Callable[[Handler], Awaitable[Server]], client: HttpClient
) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await writer.drain()

    server = await serve(cut)
    with pytest.raises(HttpError, match="closed before the answer"):
        await client.request("POST", URL(f"{server.url}/x"), {}, b"{}", excerpt_bytes=100)
    assert len(server.requests) == 1


async def test_only_the_excerpt_of_a_chunked_body_is_read_and_the_connection_is_not_reused(
    serve: Callable[[Handler], Awaitable[Server]], client: HttpClient
) -> None:
    async def endless(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await read_request(reader, s)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:  # never ends: the client must not wait for it
            writer.write(b"5\r\nabcde\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    server = await serve(endless)
    response = await client.request("GET", URL(f"{server.url}/big"), {}, None, excerpt_bytes=12)
    assert response.excerpt == b"abcdeabcdeab"
    await client.request("GET", URL(f"{server.url}/big"), {}, None, excerpt_bytes=3)
    assert server.connections == 2


async def test_a_head_answer_ends_at_its_headers_whatever_its_length_says(
    serve: Callable[[Handler], Awaitable[Server]], client: HttpClient
) -> None:
    async def head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n")
        await writer.drain()
        await reader.read()

    server = await serve(head)
    response = await client.request("HEAD", URL(f"{server.url}/h"), {}, None, excerpt_bytes=10)
    assert (response.status, response.excerpt) == (200, b"")


async def test_a_body_without_length_ends_with_the_connection(
    serve: Callable[[Handler], Awaitable[Server]], client: HttpClient
) -> None:
    async def old(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(b"HTTP/1.0 200 OK\r\nRetry-After: 3\r\n\r\nuntil the end")
        await writer.drain()

    server = await serve(old)
    response = await client.request("GET", URL(f"{server.url}/o"), {}, None, excerpt_bytes=100)
    assert (response.status, response.excerpt) == (200, b"until the end")
    assert response.headers["retry-after"] == "3"


async def test_an_interim_answer_is_skipped_for_the_final_one(
    serve: Callable[[Handler], Awaitable[Server]], client: HttpClient
) -> None:
    async def hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK)
        await writer.drain()
        await reader.read()

    server = await serve(hints)
    response = await client.request("GET", URL(f"{server.url}/e"), {}, None, excerpt_bytes=10)
    assert (response.status, response.excerpt) == (200, b"ok")
    assert "link" not in response.headers


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 two hundred\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ],
    ids=["malformed", "headers-too-large", "upgrade"],
)
async def test_an_answer_the_client_cannot_take_is_an_error(
    serve: Callable[[Handler], Awaitable[Server]], client: HttpClient, answer: bytes
) -> None:
    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        writer.write(answer)
        await writer.drain()
        await reader.read()

    server = await serve(bad)
    with pytest.raises(HttpError):
        await client.request("GET", URL(f"{server.url}/b"), {}, None, excerpt_bytes=10)


def test_the_request_carries_the_jobs_headers_over_the_defaults_and_its_body_length() -> None:
    wire = request_bytes(
        "POST",
        URL("http://u:p%40ss@[::1]:8080/p?q=1"),
        {"Content-Type": "text/csv", "Idempotency-Key": "k"},
        b"a,b",
        "application/json",
    )
    head, _, body = wire.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /p?q=1 HTTP/1.1" and body == b"a,b"
    assert "Host: [::1]:8080" in lines and "Content-Length: 3" in lines
    assert "Content-Type: text/csv" in lines and "Content-Type: application/json" not in lines
    assert "Authorization: Basic dTpwQHNz" in lines  # u:p@ss
    assert "Idempotency-Key: k" in lines


@pytest.mark.parametrize("headers", [{"X": "a\r\nInjected: 1"}, {"X:Y": "a"}, {"X\nY": "a"}])
def test_a_header_that_would_split_the_request_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest):
        request_bytes("GET", URL("http://127.0.0.1/"), headers, None, None)


async def test_the_runner_reports_such_a_header_as_a_failure_for_good(client: HttpClient) -> None:
    target = HttpTarget(type="http", url="http://127.0.0.1:9/", headers={"X": "a\nb: c"})
    attempt = Attempt(execution_id=uuid4(), job_id=uuid4(), user_id="u", attempt=1)
    outcome = await HttpRunner(client, 10)(target, attempt)
    assert (outcome.succeeded, outcome.retryable) == (False, False)
    assert outcome.error is not None and "cannot be sent" in outcome.error


def test_the_client_runs_on_uvloop_the_workers_loop() -> None:
    """The worker's loop is uvloop, whose transports are not asyncio's classes: the same
    exchanges (a fresh connection, a reused one) on a loop of its own."""

    async def scenario() -> tuple[int, list[int]]:
        state = Server()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await keep_alive(reader, writer, state)
            writer.close()

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        url = URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/u")
        client = HttpClient(GUARD)
        statuses = [
            (await client.request("GET", url, {}, None, excerpt_bytes=10)).status for _ in range(2)
        ]
        await client.close()
        server.close()
        await server.wait_closed()
        return state.connections, statuses

    async def bounded() -> tuple[int, list[int]]:
        async with asyncio.timeout(10):
            return await scenario()

    assert uvloop.run(bounded()) == (1, [200, 200])


async def test_a_request_that_ends_after_the_client_closed_closes_its_connection(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    received, answer, ended = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await read_request(reader, s)
        received.set()
        await answer.wait()
        writer.write(OK)
        await writer.drain()
        if await reader.read() == b"":  # the client's end of the connection
            ended.set()

    server = await serve(slow)
    client = HttpClient(GUARD)
    request = asyncio.create_task(
        client.request("GET", URL(f"{server.url}/s"), {}, None, excerpt_bytes=10)
    )
    await received.wait()
    await client.close()  # a worker stopping while a job's request is in flight
    answer.set()
    assert (await request).status == 200
    await asyncio.wait_for(ended.wait(), 5)

"""The worker's HTTP/1.1 client: keep-alive connections per origin, and only what a job needs.

Why not aiohttp's client: a job's request is one write and one small answer, and aiohttp's
client spends about 60 us of CPU on each (request and response objects, multidicts, cookie
jar, trace hooks, a timer per request) against about 15 us for this one on the same loopback
nginx (``/work`` micro-benchmark in the issue 11 note). At the instant of a 10,000-job burst
that difference was half of the worker's CPU. Parsing is ``httptools`` (llhttp, the parser of
Node.js): chunked bodies, keep-alive and malformed answers are its business, not ours.

What a request does:

1. Take an idle connection of the URL's origin (scheme, host, port), dropping those the server
   closed or that idled longer than ``IDLE_S``; else open one. Opening resolves the host and
   connects only to the addresses the SSRF guard allows (``allowed_addresses``), so a name
   cannot resolve one way for the runner's check and another for the connection.
2. Write the request in one buffer and wait for the answer's status, headers and the first
   ``excerpt_bytes`` of its body. A longer body is not read: the connection is closed.
3. Give the connection back when the answer was complete and the server keeps it alive.
   A reused connection that the server had closed meanwhile fails before any byte of an
   answer arrives: the request is written again once, on a new connection (what browsers
   do; the server never read it).

Redirects, timeouts, the policy and the outcome are the runner's (``workers.targets.http``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import httptools
from yarl import URL

from schemas.v1.addresses import AddressGuard, AddressRefused, IpAddress, parse_address

# An idle connection older than this is closed rather than reused (aiohttp's default too).
IDLE_S = 15.0
# Idle connections kept per origin; a burst's 64 concurrent requests fit.
MAX_IDLE_PER_ORIGIN = 128
# An answer whose status line and headers exceed this is refused, not buffered.
MAX_HEAD_BYTES = 64 * 1024
USER_AGENT = "kjs-worker"
# Methods whose empty body is still announced (a server may wait for a length otherwise).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

Origin = tuple[str, str, int]


def origin_of(url: URL) -> Origin:
    """What a connection is pooled by, and what a redirect must keep to keep the job's
    credentials: scheme, host (case-insensitive) and port."""
    return (url.scheme, (url.raw_host or "").lower(), url.port or 0)


class HttpError(Exception):
    """The exchange failed (connection refused, reset or closed early, a broken answer): the
    server may answer next time, so the runner reports it as retryable."""


class InvalidRequest(ValueError):
    """The job's request cannot be written (a header name or value that would split it)."""


@dataclass(frozen=True)
class Response:
    status: int
    # Lower-cased names; a repeated header keeps its last value.
    headers: Mapping[str, str]
    excerpt: bytes


def allowed_addresses(guard: AddressGuard, host: str, answers: list[str]) -> list[str]:
    """The answers ``host`` may be reached at; ``AddressRefused`` when none is left."""
    allowed: list[str] = []
    refusal: AddressRefused | None = None
    for answer in answers:
        address = parse_address(answer)
        try:
            if address is None:
                raise AddressRefused(f"refused: {host} resolved to {answer!r}")
            guard.check_address(host, address)
        except AddressRefused as exc:
            refusal = exc
            continue
        allowed.append(answer)
    if not allowed:
        raise refusal or AddressRefused(f"refused: {host} did not resolve")
    return allowed


def request_bytes(
    method: str, url: URL, headers: Mapping[str, str], body: bytes | None, content_type: str | None
) -> bytes:
    """The request as written on the wire; ``InvalidRequest`` for a header that would split
    it. The job's own headers win over the defaults (Host, User-Agent, Accept, Content-Type)."""
    lower = {name.lower() for name in headers}
    lines = [f"{method} {url.raw_path_qs or '/'} HTTP/1.1"]
    if "host" not in lower:
        lines.append(f"Host: {host_header(url)}")
    if "user-agent" not in lower:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept" not in lower:
        lines.append("Accept: */*")
    if url.raw_user and "authorization" not in lower:
        userinfo = f"{url.user or ''}:{url.password or ''}".encode()
        lines.append(f"Authorization: Basic {base64.b64encode(userinfo).decode()}")
    for name, value in headers.items():
        if not name or any(c in name for c in "\r\n:") or "\r" in value or "\n" in value:
            raise InvalidRequest(f"header {name!r} has a line break or a colon in its name")
        if name.lower() != "content-length":
            lines.append(f"{name}: {value}")
    if content_type is not None and "content-type" not in lower:
        lines.append(f"Content-Type: {content_type}")
    if body is not None or method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(body or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head + body if body else head


def host_header(url: URL) -> str:
    host = url.raw_host or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return host if url.is_default_port() else f"{host}:{url.port}"


def encoded_body(body: Any) -> tuple[bytes | None, str | None]:
    """A job's body on the wire, and its default content type: a string as it is, any other
    JSON value as JSON."""
    if body is None:
        return None, None
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body).encode(), "application/json"


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._reset(0, head_only=False)

    def _reset(self, limit: int, *, head_only: bool) -> None:
        self._limit = limit
        self._head_only = head_only
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._head_bytes = 0
        self._in_body = False
        # Bytes of this exchange's answer seen: a reused connection that fails before any
        # is safe to write the request on again.
        self.answered = False
        self.reusable = False

    # -- the caller's side --
    def send(self, data: bytes, limit: int, *, head_only: bool) -> asyncio.Future[Response]:
        assert self._transport is not None and self._waiter is None
        self._reset(limit, head_only=head_only)
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, but are one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self.close()  # bytes nobody asked for: the connection's state is unknown
            return
        self.answered = True
        if not self._in_body:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(HttpError(f"the answer's headers exceed {MAX_HEAD_BYTES} bytes"))
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # 101 Switching Protocols: nothing a job asked for (it sends no Upgrade).
            self._fail(HttpError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"a malformed HTTP answer: {exc}"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        # An answer without a length or chunks ends when the connection does.
        delimited = "content-length" in self._headers or "transfer-encoding" in self._headers
        if self._in_body and not delimited:
            self._complete(reusable=False)
            return
        reason = f": {exc}" if exc else ""
        self._waiter.set_exception(HttpError(f"the connection closed before the answer{reason}"))

    # -- httptools callbacks --
    def on_header(self, name: bytes, value: bytes) -> None:
        # Names are ASCII; a value is UTF-8 if anything (a Location of a lax server).
        self._headers[name.decode("latin-1").lower()] = value.decode(errors="replace")

    def on_headers_complete(self) -> None:
        self._in_body = True
        if self._head_only and self._parser.get_status_code() >= 200:
            # The answer to HEAD has no body, whatever its Content-Length says; the parser
            # cannot be told so, hence the connection is not reused.
            self._complete(reusable=False)

    def on_body(self, chunk: bytes) -> None:
        room = self._limit - self._size
        if room > 0:
            self._body.append(chunk[:room])
            self._size += min(room, len(chunk))
        if self._size >= self._limit and self._waiter is not None and not self._waiter.done():
            # The excerpt is full: the rest is not read, so the connection cannot be reused.
            self._complete(reusable=False)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            self._headers, self._in_body, self._head_bytes = {}, False, 0
            return
        self._complete(reusable=self._parser.should_keep_alive())

    def _complete(self, *, reusable: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        self.reusable = reusable and not self.closed
        if not self.reusable:
            self.close()
        waiter.set_result(
            Response(self._parser.get_status_code(), self._headers, b"".join(self._body))
        )

    def _fail(self, exc: HttpError) -> None:
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class HttpClient:
    """Pooled keep-alive connections for a worker's HTTP jobs, every one opened through the
    SSRF guard. One per worker lane; ``close`` ends the idle connections."""

    def __init__(
        self, guard: AddressGuard | None = None, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        # No allowlist unless one is given: every non-global address is refused.
        self.guard = guard or AddressGuard()
        # Made once: a context loads the system's CA certificates.
        self._ssl = ssl_context or ssl.create_default_context()
        self._idle: defaultdict[Origin, deque[_Connection]] = defaultdict(deque)
        self._closed = False

    async def request(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        excerpt_bytes: int,
        content_type: str | None = None,
    ) -> Response:
        """One exchange (steps 1-3 of the module docstring)."""
        data = request_bytes(method, url, headers, body, content_type)
        origin = origin_of(url)
        head_only = method == "HEAD"
        conn = self._take_idle(origin)
        if conn is not None:
            try:
                return await self._exchange(origin, conn, data, excerpt_bytes, head_only)
            except HttpError:
                if conn.answered:
                    raise
                # The server had closed it while idle: write the request again, once.
        conn = await self._open(url)
        return await self._exchange(origin, conn, data, excerpt_bytes, head_only)

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

    async def _exchange(
        self, origin: Origin, conn: _Connection, data: bytes, limit: int, head_only: bool
    ) -> Response:
        try:
            response = await conn.send(data, limit, head_only=head_only)
        except BaseException:
            conn.close()  # cancelled (timeout) or failed: its state is unknown
            raise
        if not conn.reusable or self._closed:
            conn.close()  # the client is closed: nobody would take it from the pool
        else:
            conn.idle_since = time.monotonic()
            idle = self._idle[origin]
            idle.append(conn)
            if len(idle) > MAX_IDLE_PER_ORIGIN:
                idle.popleft().close()
        return response

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be timed out
            if not conn.closed and now - conn.idle_since < IDLE_S:
                return conn
            conn.close()
        return None

    async def _open(self, url: URL) -> _Connection:
        loop = asyncio.get_running_loop()
        host = url.raw_host or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        literal: IpAddress | None = parse_address(host)
        if literal is not None:
            self.guard.check_address(host, literal)
            addresses = [str(literal)]
        else:
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise HttpError(f"cannot resolve {host}: {exc}") from exc
            addresses = allowed_addresses(self.guard, host, [str(i[4][0]) for i in infos])
        tls = url.scheme == "https"
        error: OSError | None = None
        for address in dict.fromkeys(addresses):
            try:
                _, conn = await loop.create_connection(
                    _Connection,
                    address,
                    port,
                    ssl=self._ssl if tls else None,
                    server_hostname=host if tls else None,
                )
                return conn
            except OSError as exc:
                error = exc
        raise HttpError(f"cannot connect to {host}:{port}: {error}")

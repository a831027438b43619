"""The ``http`` target: one request, with the execution id as its idempotency key.

Every address the request would reach goes through the SSRF guard (``schemas.v1.addresses``):
the URL's host before the request, the connection's own DNS answers (``GuardedResolver``, so a
name cannot resolve one way for the check and another for the connection), and every redirect
hop, which this runner follows itself. Only an excerpt of the response is read, so a large or
endless body costs neither memory nor time beyond the excerpt and the timeout.
"""

from __future__ import annotations

import asyncio
import codecs
import errno
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from core.clock import utcnow
from core.tracing import TRACEPARENT
from schemas.v1.addresses import AddressGuard, AddressRefused, parse_address
from schemas.v1.targets import HttpTarget
from workers.targets.base import Attempt, Outcome, with_idempotency_key
from workers.targets.retry_after import RETRY_AFTER_STATUSES, parse_retry_after

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
# Dropped when a redirect leaves the origin: the job's credentials are for its own URL only.
_ORIGIN_BOUND_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def is_retryable_status(status: int) -> bool:
    """5xx and 429 are the server's transient refusals; any other non-2xx will fail again."""
    return status >= 500 or status == 429


def is_success(target: HttpTarget, status: int) -> bool:
    """The job's own success statuses when it lists some, else any 2xx."""
    if target.success_statuses:
        return status in target.success_statuses
    return 200 <= status < 300


async def read_excerpt(content: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body: a single ``read`` returns one chunk, maybe less."""
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := await content.read(limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def excerpt(data: bytes) -> str:
    # Not final: a multi-byte character cut by the byte limit is left out, not mangled.
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data, final=False)


class GuardedResolver(AbstractResolver):
    """DNS for the worker's HTTP session that drops every answer the guard refuses."""

    def __init__(self, guard: AddressGuard, inner: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = []
        refusal: AddressRefused | None = None
        for answer in answers:
            address = parse_address(answer["host"])
            try:
                if address is None:
                    raise AddressRefused(f"refused: {host} resolved to {answer['host']!r}")
                self._guard.check_address(host, address)
            except AddressRefused as exc:
                refusal = exc
                continue
            allowed.append(answer)
        if not allowed:
            # (errno, strerror): aiohttp shows the strerror in its ClientConnectorError.
            raise OSError(errno.EACCES, str(refusal or f"refused: {host} did not resolve"))
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guarded_session(guard: AddressGuard) -> aiohttp.ClientSession:
    """The worker's session: every connection's DNS answers pass the guard."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=GuardedResolver(guard)))


async def check_url(guard: AddressGuard, url: URL) -> None:
    """Raise ``AddressRefused`` unless every address ``url``'s host resolves to is allowed."""
    if url.scheme not in ("http", "https"):
        raise AddressRefused(f"refused: scheme {url.scheme!r} (only http and https)")
    host = url.raw_host or ""
    if not host:
        raise AddressRefused("refused: the URL has no host")
    if guard.host_allowed(host):
        return
    address = parse_address(host)
    if address is not None:
        guard.check_address(host, address)
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, url.port or 80, type=socket.SOCK_STREAM
        )
    except OSError:
        return  # the request fails on DNS itself; the session's resolver still guards it
    # As the connection's resolver does: refused addresses are dropped, and the URL is refused
    # when none is left (a name with a public and a private address connects to the public).
    refusal: AddressRefused | None = None
    for *_, sockaddr in infos:
        resolved = parse_address(str(sockaddr[0]))
        if resolved is None:
            continue
        try:
            guard.check_address(host, resolved)
            return
        except AddressRefused as exc:
            refusal = exc
    if refusal is not None:
        raise refusal


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, (url.raw_host or "").lower(), url.port)


class HttpRunner:
    """Sends HTTP targets through one shared session, so connections are pooled per worker."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        excerpt_bytes: int,
        guard: AddressGuard | None = None,
    ) -> None:
        self._session = session
        self._excerpt_bytes = excerpt_bytes
        # No allowlist unless one is given: every non-global address is refused.
        self._guard = guard or AddressGuard()

    async def __call__(self, target: HttpTarget, attempt: Attempt) -> Outcome:
        headers = with_idempotency_key(target.headers, attempt)
        if attempt.traceparent is not None:
            # Ours replaces a job's own: the run's trace is the one the target continues.
            headers = {k: v for k, v in headers.items() if k.lower() != TRACEPARENT}
            headers[TRACEPARENT] = attempt.traceparent
        body: dict[str, Any] = {}
        if isinstance(target.body, str):
            body["data"] = target.body
        elif target.body is not None:
            body["json"] = target.body
        url, method = URL(str(target.url)), target.method
        try:
            async with asyncio.timeout(target.timeout_s):
                for hop in range(MAX_REDIRECTS + 1):
                    await check_url(self._guard, url)
                    async with self._session.request(
                        method,
                        url,
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=target.timeout_s),
                        allow_redirects=False,
                        **body,
                    ) as response:
                        status = response.status
                        location = response.headers.get("Location")
                        if status in REDIRECT_STATUSES and location and hop < MAX_REDIRECTS:
                            following = url.join(URL(location))
                            if _origin(following) != _origin(url):
                                headers = {
                                    k: v
                                    for k, v in headers.items()
                                    if k.lower() not in _ORIGIN_BOUND_HEADERS
                                }
                            if status == 303 or (status in (301, 302) and method != "HEAD"):
                                method, body = ("GET" if method != "HEAD" else "HEAD"), {}
                            url = following
                            continue
                        # Only the excerpt is read: a large response must not cost memory.
                        data = await read_excerpt(response.content, self._excerpt_bytes)
                        retry_after = response.headers.get("Retry-After")
                        break
        except AddressRefused as exc:
            return Outcome.failure(str(exc), retryable=False)
        except TimeoutError:
            return Outcome.failure(f"timed out after {target.timeout_s:g} s", retryable=True)
        except aiohttp.ClientError as exc:
            # Connection refused or reset, DNS, a broken response: the server may come back.
            return Outcome.failure(f"{type(exc).__name__}: {exc}", retryable=True)
        text = excerpt(data) if data else None
        if is_success(target, status):
            return Outcome(succeeded=True, http_status=status, output_excerpt=text)
        return Outcome(
            succeeded=False,
            http_status=status,
            output_excerpt=text,
            error=f"HTTP {status}",
            retryable=is_retryable_status(status),
            retry_after_s=(
                parse_retry_after(retry_after, utcnow()) if status in RETRY_AFTER_STATUSES else None
            ),
        )

"""The ``http`` target: one request, with the execution id as its idempotency key.

Every address the request would reach goes through the SSRF guard (``schemas.v1.addresses``):
a literal address in the URL before the request, the DNS answers of a name when the client
connects (``http_client``, so a name cannot resolve one way for a check and another for the
connection), and every redirect hop, which this runner follows itself. Only an excerpt of the
response is read, so a large or endless body costs neither memory nor time beyond the excerpt
and the timeout.
"""

from __future__ import annotations

import asyncio
import codecs

from yarl import URL

from core.clock import utcnow
from core.tracing import TRACEPARENT
from schemas.v1.addresses import AddressGuard, AddressRefused
from schemas.v1.targets import HttpTarget
from workers.targets.base import Attempt, Outcome, with_idempotency_key
from workers.targets.http_client import (
    HttpClient,
    HttpError,
    InvalidRequest,
    Response,
    encoded_body,
    origin_of,
)
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


def excerpt(data: bytes) -> str:
    # Not final: a multi-byte character cut by the byte limit is left out, not mangled.
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data, final=False)


def check_url(guard: AddressGuard, url: URL) -> None:
    """Raise ``AddressRefused`` for what needs no DNS: a scheme other than http(s), no host, a
    literal address the guard refuses. A name's addresses are checked when the client
    connects (``http_client.allowed_addresses``), against the answers it connects to."""
    if url.scheme not in ("http", "https"):
        raise AddressRefused(f"refused: scheme {url.scheme!r} (only http and https)")
    host = url.raw_host or ""
    if not host:
        raise AddressRefused("refused: the URL has no host")
    if not guard.host_allowed(host):
        guard.check_literal(host)


class HttpRunner:
    """Sends HTTP targets through one shared client, so connections are pooled per worker."""

    def __init__(self, client: HttpClient, excerpt_bytes: int) -> None:
        self._client = client
        self._excerpt_bytes = excerpt_bytes
        # The client's: what the runner checks before a request is what it connects to.
        self._guard = client.guard

    async def __call__(self, target: HttpTarget, attempt: Attempt) -> Outcome:
        headers = with_idempotency_key(target.headers, attempt)
        if attempt.traceparent is not None:
            # Ours replaces a job's own: the run's trace is the one the target continues.
            headers = {k: v for k, v in headers.items() if k.lower() != TRACEPARENT}
            headers[TRACEPARENT] = attempt.traceparent
        body, content_type = encoded_body(target.body)
        # pydantic has normalised and percent-encoded it (WHATWG URL rules): not parsed twice.
        url, method = URL(str(target.url), encoded=True), target.method
        try:
            async with asyncio.timeout(target.timeout_s):
                for hop in range(MAX_REDIRECTS + 1):
                    check_url(self._guard, url)
                    response = await self._client.request(
                        method,
                        url,
                        headers,
                        body,
                        excerpt_bytes=self._excerpt_bytes,
                        content_type=content_type,
                    )
                    location = response.headers.get("location")
                    if response.status not in REDIRECT_STATUSES or not location:
                        break
                    if hop == MAX_REDIRECTS:
                        break
                    following = url.join(URL(location))
                    if origin_of(following) != origin_of(url):
                        bound = _ORIGIN_BOUND_HEADERS
                        headers = {k: v for k, v in headers.items() if k.lower() not in bound}
                    status = response.status
                    if status == 303 or (status in (301, 302) and method != "HEAD"):
                        method = "GET" if method != "HEAD" else "HEAD"
                        body, content_type = None, None
                    url = following
        except AddressRefused as exc:
            return Outcome.failure(str(exc), retryable=False)
        except InvalidRequest as exc:
            return Outcome.failure(f"the request cannot be sent: {exc}", retryable=False)
        except TimeoutError:
            return Outcome.failure(f"timed out after {target.timeout_s:g} s", retryable=True)
        except HttpError as exc:
            # Connection refused or reset, DNS, a broken response: the server may come back.
            return Outcome.failure(str(exc), retryable=True)
        return outcome_of(target, response)


def outcome_of(target: HttpTarget, response: Response) -> Outcome:
    status = response.status
    text = excerpt(response.excerpt) if response.excerpt else None
    if is_success(target, status):
        return Outcome(succeeded=True, http_status=status, output_excerpt=text)
    retry_after = response.headers.get("retry-after")
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

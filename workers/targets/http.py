"""The ``http`` target: one request, with the execution id as its idempotency key."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime
from typing import Any

import aiohttp

from schemas.v1.targets import HttpTarget
from workers.targets.base import Attempt, Outcome, with_idempotency_key
from workers.targets.retry_after import RETRY_AFTER_STATUSES, parse_retry_after


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


class HttpRunner:
    """Sends HTTP targets through one shared session, so connections are pooled per worker."""

    def __init__(self, session: aiohttp.ClientSession, excerpt_bytes: int) -> None:
        self._session = session
        self._excerpt_bytes = excerpt_bytes

    async def __call__(self, target: HttpTarget, attempt: Attempt) -> Outcome:
        headers = with_idempotency_key(target.headers, attempt)
        body: dict[str, Any] = {}
        if isinstance(target.body, str):
            body["data"] = target.body
        elif target.body is not None:
            body["json"] = target.body
        try:
            async with self._session.request(
                target.method,
                str(target.url),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=target.timeout_s),
                **body,
            ) as response:
                # Only the excerpt is read: a large response must not cost worker memory.
                data = await read_excerpt(response.content, self._excerpt_bytes)
                status = response.status
                retry_after = response.headers.get("Retry-After")
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
                parse_retry_after(retry_after, datetime.now(UTC))
                if status in RETRY_AFTER_STATUSES
                else None
            ),
        )

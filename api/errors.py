"""Every failure leaves the API as JSON, from one middleware.

Handlers raise domain errors (``ApiError`` subclasses, ``StoreUnavailable``) and never build
error responses themselves, so the error shapes stay the same on every route:
``{"errors": [{"field", "message"}]}`` for a bad request, ``{"error": "..."}`` otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from core.db import StoreUnavailable

log = logging.getLogger(__name__)

# How long a client should wait before retrying after a 503. Broker elections and Postgres
# restarts usually finish within a few seconds.
RETRY_AFTER_S = 5

_BODY_HEADERS = {"content-type", "content-length"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    status = 500

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": self.message}


class NotFound(ApiError):
    status = 404


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="kjs"'})


class Forbidden(ApiError):
    status = 403


class TooManyRequests(ApiError):
    status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})


class TooLarge(ApiError):
    """A body, or a part of it, over a size limit (HTTP 413); the message names the part."""

    status = 413


class Conflict(ApiError):
    status = 409

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.details}


class ServiceUnavailable(ApiError):
    status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": str(RETRY_AFTER_S)})


class FieldError(ApiError):
    """A request that names what is wrong with it, field by field (HTTP 422)."""

    status = 422

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))
        self.errors = list(errors)

    def body(self) -> dict[str, Any]:
        return {"errors": [{"field": f, "message": m} for f, m in self.errors]}


def json_response(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=json.dumps(body), status=status, headers=headers, content_type="application/json"
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response(exc.body(), status=exc.status, headers=exc.headers)
    except StoreUnavailable as exc:
        log.warning("Postgres unavailable for %s %s: %s", request.method, request.path, exc)
        unavailable = ServiceUnavailable("job store unavailable, retry later")
        return json_response(unavailable.body(), status=503, headers=unavailable.headers)
    except web.HTTPException as exc:
        # aiohttp's own refusals (unknown route, wrong method, body too large) keep their
        # status and headers (e.g. Allow) but answer JSON like the rest of the API.
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
        return json_response({"error": exc.reason.lower()}, status=exc.status, headers=headers)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_response({"error": "internal error"}, status=500)

"""Every failure in the console leaves as a page, from one middleware.

Handlers raise the API's domain errors (``api.errors``) as the API's handlers do, and the
guard's own (``console.guard``); this turns each into a page with the same status the API
would answer. Anything not found, an unknown job and another tenant's alike, is the one
not-found page, so ids cannot be probed.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import web

from api.errors import ApiError, FieldError, NotFound
from console.guard import Handler, LoginNeeded, Refused, TenantNeeded, login_redirect
from console.render import render
from console.sessions import PATH
from core.db import StoreUnavailable

log = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LoginNeeded as needed:
        return login_redirect(request, needed)
    except TenantNeeded as needed:
        raise web.HTTPSeeOther(f"{PATH}tenant?next={quote(needed.path, safe='/')}") from None
    except Refused as exc:
        return _problem(request, exc.status, exc.message)
    except NotFound:
        return render(request, "not_found.html", status=404)
    except FieldError as exc:
        return _problem(request, 422, "this request does not fit the form", exc.errors)
    except ApiError as exc:
        response = _problem(request, exc.status, exc.message)
        response.headers.update(exc.headers)
        return response
    except StoreUnavailable as exc:
        log.warning(
            "console: Postgres unavailable for %s %s: %s", request.method, request.path, exc
        )
        return _problem(request, 503, "the job store is unavailable, retry in a moment")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404 and request.path == PATH.rstrip("/"):
            raise web.HTTPMovedPermanently(PATH) from None  # /ui -> /ui/
        if exc.status == 404:
            return render(request, "not_found.html", status=404)
        return _problem(request, exc.status, exc.reason)
    except Exception:
        log.exception("console: unhandled error in %s %s", request.method, request.path)
        return _problem(request, 500, "internal error (it is in the API's log)")


def _problem(
    request: web.Request,
    status: int,
    message: str,
    fields: list[tuple[str, str]] | None = None,
) -> web.Response:
    heading = "Refused" if status < 500 else "Unavailable" if status == 503 else "Error"
    return render(
        request,
        "problem.html",
        status=status,
        heading=heading,
        message=message,
        fields=fields or [],
    )

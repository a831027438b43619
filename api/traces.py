"""The ``accept`` step of a job's trace: the traceparent a write request came with.

``trace_middleware`` reads the request's W3C ``traceparent`` header on every write (POST,
PUT, PATCH, DELETE) and, with tracing on, wraps the request in an ``accept`` span, its child.
``commands.send`` puts what is to be passed on (the span's context, or the request's own
traceparent with tracing off) on the command record as its ``traceparent`` header. A
malformed header is ignored: the request is served as if it had none (core/tracing.py).
"""

from __future__ import annotations

from contextvars import ContextVar

from aiohttp import web
from aiohttp.typedefs import Handler

from core import tracing

READS = frozenset({"GET", "HEAD", "OPTIONS"})
# The traceparent the command of the request being served passes on (None: no trace). A
# context variable, since aiohttp serves each request in its own task.
PASSED_ON: ContextVar[str | None] = ContextVar("kjs_traceparent", default=None)


@web.middleware
async def trace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in READS:
        return await handler(request)
    given = request.headers.get(tracing.TRACEPARENT)
    parent = None if given is None else tracing.normalized(given)
    if parent is None and not tracing.enabled():
        return await handler(request)  # nothing to trace, nothing to pass on: no work
    attributes = {"http.request.method": request.method, "url.path": request.path}
    with tracing.span("accept", parent, attributes, tracing.SERVER) as passed:
        token = PASSED_ON.set(passed)
        try:
            return await handler(request)
        finally:
            PASSED_ON.reset(token)


def command_headers() -> list[tuple[str, bytes]] | None:
    """The command record's headers: its ``traceparent``, when the request has a trace."""
    return tracing.kafka_headers(PASSED_ON.get())

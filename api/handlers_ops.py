"""Operational endpoints: liveness, readiness, metrics and the generated OpenAPI document."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import queries
from api.deps import DEPS
from api.errors import RETRY_AFTER_S, json_response
from api.models import HealthBody, ReadinessBody
from api.openapi import OPENAPI
from api.views import model_response
from core.db import StoreUnavailable

log = logging.getLogger(__name__)

# Readiness is polled often by orchestrators: it must answer well before their timeout.
_PING_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    """Only that the process serves requests: a dependency outage must not get it restarted."""
    return model_response(HealthBody())


async def _postgres_state(request: web.Request) -> str:
    try:
        await queries.ping(request.app[DEPS].pool, _PING_TIMEOUT_S)
    except StoreUnavailable as exc:
        log.info("Postgres not ready: %s", exc)
        return "unavailable"
    return "ok"


async def _kafka_state(request: web.Request) -> str:
    return "ok" if await request.app[DEPS].publisher.is_connected() else "unavailable"


async def readyz(request: web.Request) -> web.Response:
    postgres, kafka = await asyncio.gather(_postgres_state(request), _kafka_state(request))
    body = ReadinessBody(ready=postgres == kafka == "ok", postgres=postgres, kafka=kafka)
    if body.ready:
        return model_response(body)
    return model_response(body, status=503, **{"Retry-After": str(RETRY_AFTER_S)})


async def metrics(request: web.Request) -> web.Response:
    # CONTENT_TYPE_LATEST carries a charset, which aiohttp's content_type argument refuses.
    return web.Response(
        body=generate_latest(request.app[DEPS].registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])

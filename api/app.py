"""The aiohttp application, built from its dependencies so tests run the real thing."""

from __future__ import annotations

from aiohttp import web

from api.deps import DEPS, ApiDeps
from api.errors import error_middleware
from api.metrics import METRICS, ApiMetrics, metrics_middleware
from api.openapi import OPENAPI, build_openapi
from api.routes import ROUTES
from api.tenancy import TENANTS

# A job spec is a few KiB; a larger body is a mistake or abuse, and is refused before parsing.
MAX_BODY_BYTES = 256 * 1024


def build_app(deps: ApiDeps) -> web.Application:
    # Metrics outermost, so that the answers the error middleware makes are counted too.
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware], client_max_size=MAX_BODY_BYTES
    )
    app[DEPS] = deps
    app[TENANTS] = deps.tenants
    app[METRICS] = ApiMetrics(deps.registry)
    app[OPENAPI] = build_openapi(ROUTES)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    return app

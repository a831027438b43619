"""The aiohttp application, built from its dependencies so tests run the real thing."""

from __future__ import annotations

import logging

from aiohttp import web

from api.deps import DEPS, QUOTAS, ApiDeps
from api.errors import error_middleware
from api.jwt_auth import build_authenticator
from api.metrics import METRICS, ApiMetrics, metrics_middleware
from api.openapi import OPENAPI, build_openapi
from api.routes import ROUTES
from api.tenancy import (
    AUTHENTICATOR,
    TENANTS,
    TenantResolver,
    auth_middleware,
    trust_claimed_user,
)
from api.traces import trace_middleware
from core.quotas import Quotas

log = logging.getLogger(__name__)

# A job spec is a few KiB; a larger body is a mistake or abuse, and is refused before parsing.
MAX_BODY_BYTES = 256 * 1024


def build_app(deps: ApiDeps) -> web.Application:
    # Metrics outermost, so that the answers the error middleware makes are counted too.
    # Auth inside the error middleware, so that its 401 and 403 answer JSON like the rest.
    # The trace's accept span covers the whole write, refusals included.
    middlewares = [metrics_middleware, trace_middleware, error_middleware]
    if deps.security.auth_disabled:
        log.warning(
            "AUTHENTICATION IS DISABLED (KJS_AUTH_DISABLED=true): any caller can act for any "
            "tenant. Never expose this API beyond a trusted machine."
        )
        tenants: TenantResolver = trust_claimed_user
    else:
        middlewares.append(auth_middleware)
        tenants = deps.tenants
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app[DEPS] = deps
    app[QUOTAS] = Quotas(deps.security)
    app[TENANTS] = tenants
    # API keys, and JWTs of KJS_JWT_ISSUER when it is set.
    app[AUTHENTICATOR] = deps.authenticator or build_authenticator(deps.pool, deps.security)
    app[METRICS] = ApiMetrics(deps.registry)
    app[OPENAPI] = build_openapi(ROUTES)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    return app

"""Who the caller acts for: the seam where credentials plug in (invariant 6).

With authentication on (the default), ``auth_middleware`` verifies the request's
``Authorization: Bearer <key>`` for every ``/v1/`` route, checks the scope the method needs
(``read`` for GET, ``write`` for the rest; ``admin`` covers both) and stores the principal on
the request. ``credential_tenant`` then answers the tenant from the credential: a body or query
naming another tenant gets 403, and another tenant's job is reported absent (404) by the
handlers. Every handler asks ``resolve_tenant`` before it touches a tenant's data.

The credential is an API key (``kjs_...``) or, with ``KJS_JWT_ISSUER`` set, a JWT of that
issuer (``api.jwt_auth``): both give a principal with a user id and scopes, used alike here.

With ``KJS_AUTH_DISABLED=true`` (an explicit, logged choice) the claimed tenant is trusted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from api.errors import Forbidden, Unauthorized
from api.keys import Authenticator, Principal, Scope

# (request, the user_id the request names) -> the user_id its credential covers.
TenantResolver = Callable[[web.Request, str], Awaitable[str]]

TENANTS: web.AppKey[TenantResolver] = web.AppKey("kjs_api_tenants")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("kjs_api_authenticator")
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("kjs_principal", Principal)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The only paths served without a key.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
# POSTs that compute an answer and change nothing: they need the read scope only.
READ_ONLY_POSTS = frozenset({"/v1/schedules/preview"})


class TenantDenied(Forbidden):
    def __init__(self) -> None:
        super().__init__("not allowed for this user_id")


async def trust_claimed_user(request: web.Request, claimed_user_id: str) -> str:
    """Auth disabled: no credentials exist, the claimed tenant is taken as it is."""
    return claimed_user_id


async def credential_tenant(request: web.Request, claimed_user_id: str) -> str:
    """The tenant of the request's verified credential (set by ``auth_middleware``)."""
    principal = request.get(PRINCIPAL)
    if principal is None:
        raise Unauthorized("missing or invalid API key")
    return principal.user_id


async def resolve_tenant(request: web.Request, claimed_user_id: str) -> str:
    """The tenant the request acts for; refuses a claim its credential does not cover."""
    tenant = await request.app[TENANTS](request, claimed_user_id)
    if tenant != claimed_user_id:
        raise TenantDenied()
    return tenant


def required_scope(method: str, path: str = "") -> Scope:
    if method.upper() in _READ_METHODS or path in READ_ONLY_POSTS:
        return "read"
    return "write"


def bearer_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 for a missing, unknown or revoked key; 403 for a key without the scope.

    Deny by default: every path but the few open ones needs a key, so a path that does not
    match a route the way it was meant to (``//v1/jobs``, a route added later) is not open.
    """
    if request.path in OPEN_PATHS:
        return await handler(request)  # health, readiness, metrics and the spec stay open
    key = bearer_key(request)
    if key is None:
        raise Unauthorized("missing API key (Authorization: Bearer <key>)")
    principal = await request.app[AUTHENTICATOR].authenticate(key)
    if principal is None:
        raise Unauthorized("invalid or revoked API key")
    scope = required_scope(request.method, request.path)
    if not principal.allows(scope):
        credential = "API key" if principal.source == "api_key" else "token"
        raise Forbidden(f"this {credential} lacks the {scope} scope")
    request[PRINCIPAL] = principal
    return await handler(request)

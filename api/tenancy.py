"""Who the caller acts for: the seam where credentials plug in (invariant 6).

With authentication on (the default), ``auth_middleware`` verifies the request's
``Authorization: Bearer <key>`` for every ``/v1/`` route, checks the scope the method needs
(``read`` for GET, ``write`` for the rest; ``admin`` covers both) and stores the principal on
the request. ``credential_tenant`` then answers the tenant from the credential: a request may leave
``user_id`` out and acts for the credential's tenant; a body or query naming a tenant the
credential does not cover gets 403 saying which tenants it covers, and another tenant's job is
reported absent (404) by the handlers. A service credential (``kjs keys create --tenants a,b``
or ``--all-tenants``) acts for several tenants, so its requests name one. Every handler asks
``resolve_tenant`` before it touches a tenant's data.

The credential is an API key (``kjs_...``) or, with ``KJS_JWT_ISSUER`` set, a JWT of that
issuer (``api.jwt_auth``): both give a principal with a user id and scopes, used alike here.

With ``KJS_AUTH_DISABLED=true`` (an explicit, logged choice) the claimed tenant is trusted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from api.errors import FieldError, Forbidden, Unauthorized
from api.keys import Authenticator, Principal, Scope

# (request, the user_id the request names or None) -> the tenant the request acts for.
TenantResolver = Callable[[web.Request, str | None], Awaitable[str]]

TENANTS: web.AppKey[TenantResolver] = web.AppKey("kjs_api_tenants")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("kjs_api_authenticator")
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("kjs_principal", Principal)
# Set on a sub-application mounted on the API (``app.add_subapp``) that authenticates its own
# requests, such as a web UI with a session cookie: the API's middleware lets its paths through.
AUTHENTICATES_ITSELF: web.AppKey[bool] = web.AppKey("kjs_authenticates_itself", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The only paths served without a key.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
# POSTs that compute an answer and change nothing: they need the read scope only.
READ_ONLY_POSTS = frozenset({"/v1/schedules/preview"})


class TenantDenied(Forbidden):
    def __init__(self, claimed: str, principal: Principal) -> None:
        credential = "API key" if principal.source == "api_key" else "token"
        super().__init__(
            f"not allowed for user_id {claimed!r}: this {credential} acts for "
            f"{principal.acts_for()}"
        )


def _tenant_needed(why: str) -> FieldError:
    return FieldError([("user_id", f"required: {why}")])


async def trust_claimed_user(request: web.Request, claimed_user_id: str | None) -> str:
    """Auth disabled: no credentials exist, the claimed tenant is taken as it is."""
    if claimed_user_id is None:
        raise _tenant_needed("authentication is disabled, so no credential names the tenant")
    return claimed_user_id


async def credential_tenant(request: web.Request, claimed_user_id: str | None) -> str:
    """The tenant a request acts for, by its verified credential (set by ``auth_middleware``):
    the claimed one if the credential covers it, else the credential's own tenant."""
    principal = request.get(PRINCIPAL)
    if principal is None:
        raise Unauthorized("missing or invalid API key")
    if claimed_user_id is None:
        if principal.user_id is None:
            raise _tenant_needed(f"this service credential acts for {principal.acts_for()}")
        return principal.user_id
    if not principal.covers(claimed_user_id):
        raise TenantDenied(claimed_user_id, principal)
    return claimed_user_id


async def resolve_tenant(request: web.Request, claimed_user_id: str | None) -> str:
    """The tenant the request acts for; refuses a claim its credential does not cover."""
    return await request.app[TENANTS](request, claimed_user_id)


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


def _self_authenticating(request: web.Request) -> bool:
    """The request was routed into a sub-application that says it checks credentials itself
    (the innermost app the route belongs to; the API's own routes never are)."""
    owner = request.match_info.apps[-1]
    return owner is not request.app and owner.get(AUTHENTICATES_ITSELF, False)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 for a missing, unknown or revoked key; 403 for a key without the scope.

    Deny by default: every path but the few open ones needs a key, so a path that does not
    match a route the way it was meant to (``//v1/jobs``, a route added later) is not open.
    """
    if request.path in OPEN_PATHS:
        return await handler(request)  # health, readiness, metrics and the spec stay open
    if _self_authenticating(request):
        return await handler(request)
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

"""Who may see and do what in the console: the session, the credential, the scope, CSRF.

Every console request passes ``guard_middleware``, which follows these steps in order:

1. A request for a public route (the login page and its POST, the static files) or for no
   route at all (a 404) needs no session. Every other route needs one.
2. The session cookie is opened (``console.sessions``). No valid session: a page asks the user
   to log in (a redirect that remembers the page); a POST is refused with 403, before anything
   it asks for is done.
3. The credential the session holds is verified again by the API's own ``Authenticator``
   (``api.keys``: API keys with their cache and revocation, JWTs with their expiry). A
   credential that no longer verifies ends the session (the cookie is cleared).
4. It must hold the ``read`` scope; a route that changes something needs ``write`` (as the API
   asks of a POST), so a read-only key is refused the actions even if it forges the form.
5. Every POST, the login's included, must come from the console's own origin (``Origin``, or
   ``Referer`` when a browser sends no Origin), and every POST but the login must carry the
   session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``). SameSite=Strict
   already keeps a cross-site page's POST from carrying the cookie; these checks also stop a
   same-site page on another port or host (``127.0.0.1:other``) and any older browser.
6. The principal is put on the request where the API's tenancy expects it
   (``api.tenancy.PRINCIPAL``), so that the API's handlers' checks run unchanged, and the
   tenant the pages act for (``console.render.TENANT``): a tenant key's own, or the one a
   service key chose (``/ui/tenant``) and still covers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from api.deps import DEPS
from api.errors import ServiceUnavailable, Unauthorized
from api.tenancy import AUTHENTICATOR, PRINCIPAL
from console.render import SESSION, TENANT
from console.sessions import COOKIE, PATH, Session, SessionCodec, tokens_match
from core.db import StoreUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# public: no session; read: any signed-in credential; write: one with the write scope.
Access = Literal["public", "read", "write"]

CODEC: web.AppKey[SessionCodec] = web.AppKey("kjs_console_sessions", SessionCodec)
ACCESS: web.AppKey[dict[Handler, Access]] = web.AppKey("kjs_console_access", dict)
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"


class Refused(Exception):
    """A request the guard refuses: rendered as a page with this status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LoginNeeded(Exception):
    """No valid session for a page: the user is sent to log in, then back to ``path``."""

    def __init__(self, path: str, clear_cookie: bool = False) -> None:
        super().__init__(path)
        self.path = path
        self.clear_cookie = clear_cookie


class TenantNeeded(Exception):
    """A service key has not chosen its tenant yet: it does, then comes back to ``path``."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def acting_tenant(request: web.Request) -> str:
    """The tenant the page shows and acts for (step 6 of the module docstring)."""
    tenant = request.get(TENANT)
    if tenant is None:
        raise TenantNeeded(request.path_qs)
    return tenant


def access_of(request: web.Request) -> Access | None:
    """The route's access level; None when no route matched (a 404 for everyone)."""
    match = request.match_info
    if match.http_exception is not None:
        return None
    if isinstance(match.route.resource, web.StaticResource):
        return "public"
    # Deny by default: a route missing from the table needs a session.
    return request.app[ACCESS].get(match.handler, "read")


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    access = access_of(request)
    if request.method == "POST" and not same_origin(request):
        raise Refused(403, "refused: this form was not sent from the console's own pages")
    if access in (None, "public"):
        return await handler(request)
    if request.app[DEPS].security.auth_disabled:
        # No credential names a tenant: a session from before would act for any tenant.
        raise Refused(403, "the console does not serve while KJS_AUTH_DISABLED is set")
    session = request.app[CODEC].open(request.cookies.get(COOKIE))
    if session is None:
        if request.method == "POST":
            raise Refused(403, "refused: no console session (log in again)")
        raise LoginNeeded(request.path_qs)
    await _authenticate(request, session, access)
    if request.method == "POST":
        sent = request.headers.get(CSRF_HEADER) or (await request.post()).get(CSRF_FIELD)
        if not isinstance(sent, str) or not tokens_match(sent, session):
            raise Refused(403, "refused: the form's CSRF token is missing or out of date")
    return await handler(request)


async def _authenticate(request: web.Request, session: Session, access: Access) -> None:
    try:
        principal = await request.app[AUTHENTICATOR].authenticate(session.credential)
    except Unauthorized:
        principal = None  # an expired or no longer valid JWT
    except StoreUnavailable as exc:
        raise ServiceUnavailable("the job store is unavailable, retry later") from exc
    if principal is None:
        if request.method == "POST":
            raise Refused(403, "refused: the key of this session is no longer valid")
        raise LoginNeeded(request.path_qs, clear_cookie=True)
    if not principal.allows("read"):
        raise Refused(403, "this key lacks the read scope")
    if access == "write" and not principal.allows("write"):
        credential = "API key" if principal.source == "api_key" else "token"
        raise Refused(403, f"this {credential} lacks the write scope")
    request[PRINCIPAL] = principal
    request[SESSION] = session
    tenant = principal.user_id or session.tenant
    if tenant is not None and principal.covers(tenant):
        request[TENANT] = tenant


def same_origin(request: web.Request) -> bool:
    """The request's ``Origin`` (else ``Referer``) names this host, or the browser sent
    neither (a non-browser client: the CSRF token still guards it).

    The host and port are compared, not the scheme, so that the console works behind a
    proxy that ends TLS (the browser's origin is https, the request arriving here http).
    """
    claimed = request.headers.get("Origin") or request.headers.get("Referer")
    if claimed is None:
        return True
    if claimed == "null":
        return False  # an opaque origin: a sandboxed frame, a data: URL, a file
    try:
        url = URL(claimed)
    except ValueError:
        return False
    # Browsers write an origin's authority as the Host header has it: the default port left out.
    return bool(url.host) and url.raw_authority.lower() == request.host.lower()


def login_redirect(request: web.Request, needed: LoginNeeded) -> web.Response:
    """To the login page, coming back to the page afterwards. An htmx request (a poll) is
    answered ``HX-Redirect`` instead, so the whole page goes, not a fragment of it."""
    target = f"{PATH}login?next={quote(needed.path, safe='/')}"
    if request.headers.get("HX-Request"):
        response = web.Response(status=401, headers={"HX-Redirect": target})
    else:
        response = web.Response(status=303, headers={"Location": target})
    if needed.clear_cookie:
        response.del_cookie(COOKIE, path=PATH)
    return response

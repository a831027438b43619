"""Logging in and out, and choosing the tenant a service key acts for.

Logging in:

1. The user opens ``/ui/`` (or ``/ui/login``). ``kjs dev`` prints a link ending in
   ``#key=kjs_...``: the key is in the fragment, which a browser never sends to a server, so
   it reaches no access log or proxy. The page's script (``static/console.js``) takes it out
   of the address bar (``history.replaceState``) before doing anything else, then POSTs it
   here, as the page's form would if the key were pasted into it.
2. The POST must come from this origin (``console.guard``): a page elsewhere cannot log a
   browser into its own account (login CSRF).
3. The key is verified by the API's ``Authenticator`` (API keys, and JWTs when configured)
   and must hold the ``read`` scope.
4. A session is made (``console.sessions``: the credential, a fresh CSRF token, the time)
   and sealed into an HttpOnly, SameSite=Strict cookie for ``/ui/``.
5. The browser is sent on (303) to the page it wanted, or the job list; a service key that
   acts for several tenants picks one first (``/ui/tenant``).
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from api.deps import DEPS
from api.errors import Unauthorized
from api.tenancy import AUTHENTICATOR, PRINCIPAL
from console.forms import CsrfForm, FormError, LoginForm, NextQuery, TenantForm, parse
from console.guard import CODEC
from console.render import SESSION, render
from console.sessions import COOKIE, PATH, Session
from core.db import StoreUnavailable

HOME = f"{PATH}jobs"
NEEDS_AUTH = "the console needs authentication, and KJS_AUTH_DISABLED is set on this API"


def safe_next(path: str | None) -> str:
    """A console path to go to after logging in; anything else (another site, ``//host``, a
    scheme) is the job list."""
    if not path or not path.startswith(PATH) or path.startswith("//") or "\\" in path:
        return HOME
    return path


async def login_page(request: web.Request) -> web.Response:
    try:
        wanted = parse(NextQuery, request.query).next
    except FormError:
        wanted = None
    signed_in = request.app[CODEC].open(request.cookies.get(COOKIE)) is not None
    error = NEEDS_AUTH if request.app[DEPS].security.auth_disabled else None
    return render(request, "login.html", next=safe_next(wanted), signed_in=signed_in, error=error)


async def login(request: web.Request) -> web.StreamResponse:
    try:
        form = parse(LoginForm, await request.post())
    except FormError as exc:
        return _refused(request, 422, str(exc), HOME)
    wanted = safe_next(form.next)
    if request.app[DEPS].security.auth_disabled:
        # Without authentication the API trusts whoever claims a tenant; the console, which
        # shows and acts for a tenant, does not serve in that mode.
        return _refused(request, 503, NEEDS_AUTH, wanted)
    try:
        principal = await request.app[AUTHENTICATOR].authenticate(form.key)
    except Unauthorized as exc:
        return _refused(request, 401, f"not accepted: {exc.message}", wanted)
    except StoreUnavailable:
        return _refused(request, 503, "the key store is unavailable, retry in a moment", wanted)
    if principal is None:
        return _refused(request, 401, "not accepted: an unknown or revoked key", wanted)
    if not principal.allows("read"):
        return _refused(request, 403, "not accepted: this key lacks the read scope", wanted)
    session = Session.start(form.key)
    if principal.user_id is None:
        wanted = f"{PATH}tenant?next={quote(wanted, safe='/')}"
    response = web.HTTPSeeOther(wanted)
    _set_cookie(request, response, session)
    raise response


def _refused(request: web.Request, status: int, message: str, wanted: str) -> web.Response:
    return render(request, "login.html", status=status, next=wanted, signed_in=False, error=message)


def _set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    codec = request.app[CODEC]
    response.set_cookie(
        COOKIE,
        codec.seal(session),
        path=PATH,
        max_age=int(codec.lifetime_s),
        httponly=True,
        samesite="Strict",
        # Over https, or behind a TLS proxy with KJS_CONSOLE_COOKIE_SECURE, the cookie never
        # goes out over http.
        secure=request.secure or codec.always_secure,
    )


async def logout(request: web.Request) -> web.StreamResponse:
    try:
        parse(CsrfForm, await request.post())
    except FormError as exc:
        return render(request, "login.html", status=422, next=HOME, signed_in=True, error=str(exc))
    response = web.HTTPSeeOther(f"{PATH}login")
    response.del_cookie(COOKIE, path=PATH)
    raise response


async def tenant_page(request: web.Request) -> web.StreamResponse:
    if request[PRINCIPAL].user_id is not None:
        raise web.HTTPSeeOther(HOME)  # a tenant's own key has nothing to choose
    try:
        wanted = parse(NextQuery, request.query).next
    except FormError:
        wanted = None
    return render(request, "tenant.html", next=safe_next(wanted), error=None)


async def choose_tenant(request: web.Request) -> web.StreamResponse:
    """A service key picks the tenant the pages show and act for (one it covers)."""
    try:
        form = parse(TenantForm, await request.post())
    except FormError as exc:
        return render(request, "tenant.html", status=422, next=HOME, error=str(exc))
    wanted = safe_next(form.next)
    if not request[PRINCIPAL].covers(form.tenant):
        message = f"this key does not act for {form.tenant!r}"
        return render(request, "tenant.html", status=403, next=wanted, error=message)
    response = web.HTTPSeeOther(wanted)
    _set_cookie(request, response, request[SESSION].acting_for(form.tenant))
    raise response

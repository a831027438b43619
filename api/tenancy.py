"""Who the caller acts for: the seam where credentials will plug in (invariant 6).

Contract v1 has no authentication yet, so the tenant is the ``user_id`` the request claims.
Every handler asks ``resolve_tenant`` before it touches a tenant's data; a credential-based
resolver (API key, mTLS, JWT) then replaces ``ApiDeps.tenants``, and no handler changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from api.errors import Forbidden

# (request, the user_id the request names) -> the user_id its credential covers.
TenantResolver = Callable[[web.Request, str], Awaitable[str]]

TENANTS: web.AppKey[TenantResolver] = web.AppKey("kjs_api_tenants")


class TenantDenied(Forbidden):
    def __init__(self) -> None:
        super().__init__("not allowed for this user_id")


async def trust_claimed_user(request: web.Request, claimed_user_id: str) -> str:
    """v1 behaviour: no credentials exist, the claimed tenant is taken as it is."""
    return claimed_user_id


async def resolve_tenant(request: web.Request, claimed_user_id: str) -> str:
    """The tenant the request acts for; refuses a claim its credential does not cover."""
    tenant = await request.app[TENANTS](request, claimed_user_id)
    if tenant != claimed_user_id:
        raise TenantDenied()
    return tenant

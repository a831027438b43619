"""``GET /v1/executions/{execution_id}``: one attempt with its full stored log."""

from __future__ import annotations

from uuid import UUID

from aiohttp import web

from api import queries
from api.deps import DEPS
from api.errors import NotFound
from api.models import ExecutionDetail
from api.tenancy import TenantDenied, resolve_tenant
from api.views import model_response

_NOT_FOUND = "execution not found"


def _execution_id(request: web.Request) -> UUID:
    """A malformed id names no execution, so it is a 404 like an unknown one."""
    try:
        return UUID(request.match_info["execution_id"])
    except ValueError as exc:
        raise NotFound(_NOT_FOUND) from exc


async def get_execution(request: web.Request) -> web.Response:
    row = await queries.get_execution(request.app[DEPS].pool, _execution_id(request))
    if row is None:
        raise NotFound(_NOT_FOUND)
    try:
        # Another tenant's execution is reported absent, so ids cannot be probed.
        await resolve_tenant(request, row["user_id"])
    except TenantDenied as exc:
        raise NotFound(_NOT_FOUND) from exc
    return model_response(ExecutionDetail.model_validate(dict(row)))

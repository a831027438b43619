"""Pages from Jinja2 templates (``console/templates``), autoescaped, with what every page shows.

Every page gets the signed-in principal, the tenant it acts for, whether it may act (the
write scope: without it no action button is drawn, and ``console.guard`` refuses the POSTs
anyway) and the CSRF token its forms carry.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from api.tenancy import PRINCIPAL
from console import views
from console.sessions import Session
from timetable.wallclock import format_offset
from timetable.words import relative, schedule_words

SESSION: web.RequestKey[Session] = web.RequestKey("kjs_console_session", Session)
# The tenant the pages show and act for: a tenant key's own, or the one a service key chose.
TENANT: web.RequestKey[str] = web.RequestKey("kjs_console_tenant", str)
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("kjs_console_templates", jinja2.Environment)

# Pages are per user and carry a CSRF token: never stored by a cache, never framed.
PAGE_HEADERS = {"Cache-Control": "no-store"}


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = utc_stamp
    env.filters["local"] = local_stamp
    env.filters["iso"] = lambda at: at.astimezone(UTC).isoformat() if at is not None else ""
    env.globals.update(
        words=schedule_words,
        outcome=views.outcome,
        zone_of=views.zone_of,
        allowed=views.allowed,
        target_words=views.target_words,
        stamp=views.stamp,
        kinds=("cron", "interval", "once"),
    )
    return env


def utc_stamp(at: datetime | None) -> str:
    """``2026-12-05 10:00:00 UTC`` (milliseconds when it has any)."""
    if at is None:
        return "-"
    utc = at.astimezone(UTC)
    spec = "milliseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(sep=" ", timespec=spec) + " UTC"


def local_stamp(at: datetime | None, zone: str | tzinfo = "UTC") -> str:
    """The wall time in ``zone`` with its offset: ``2026-03-29 03:30:00 +02:00 CEST``."""
    if at is None:
        return "-"
    local = at.astimezone(ZoneInfo(zone) if isinstance(zone, str) else zone)
    offset = local.utcoffset()
    assert offset is not None  # aware, in a real zone
    return f"{local:%Y-%m-%d %H:%M:%S} {format_offset(offset)} {local.tzname()}"


def when(at: datetime | None, now: datetime) -> str:
    return "-" if at is None else relative(at, now)


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    principal = request.get(PRINCIPAL)
    session = request.get(SESSION)
    now = datetime.now(UTC)
    page = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(
            request=request,
            principal=principal,
            tenant=request.get(TENANT),
            can_write=principal is not None and principal.allows("write"),
            csrf=session.csrf if session is not None else "",
            now=now,
            when=lambda at: when(at, now),
            **context,
        )
    )
    return web.Response(text=page, status=status, content_type="text/html", headers=PAGE_HEADERS)

"""The console as an aiohttp sub-application, mounted on the API's app under ``/ui/``.

``kjs api`` (``kjs.cli``) builds the API's app and mounts this on it (``mount_console``), so
the API knows nothing of the console: it only lets the console's paths through its own
authentication (``api.tenancy.AUTHENTICATES_ITSELF``), since the console checks every request
itself (``console.guard``). The console acts through the API's own state, the same objects:
the job store pool and command publisher (``DEPS``), the quota buckets (``QUOTAS``), the tenant
resolver (``TENANTS``) and the credential verifier (``AUTHENTICATOR``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from api.deps import DEPS, QUOTAS
from api.metrics import METRICS
from api.tenancy import AUTHENTICATES_ITSELF, AUTHENTICATOR, TENANTS
from console import pages_dead_letters as letters
from console import pages_jobs as jobs
from console import pages_login as login
from console import pages_pipeline as pipeline
from console.errors import error_middleware
from console.guard import ACCESS, CODEC, Access, Handler, guard_middleware
from console.lag_history import LagHistory
from console.render import TEMPLATES, environment
from console.sessions import PATH, SessionCodec
from core.settings import ConsoleSettings, KafkaSettings, load
from lag.command import LagOptions, monitor_for
from topics.catalog import catalog

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

# Every page and action: method, path under /ui, handler, and who may use it.
ROUTES: tuple[tuple[str, str, Handler, Access], ...] = (
    ("GET", "/", login.login_page, "public"),
    ("GET", "/login", login.login_page, "public"),
    ("POST", "/login", login.login, "public"),
    # Public: logging out must work with a revoked key too (the Origin check still applies).
    ("POST", "/logout", login.logout, "public"),
    ("GET", "/tenant", login.tenant_page, "read"),
    ("POST", "/tenant", login.choose_tenant, "read"),
    ("GET", "/jobs", jobs.jobs_page, "read"),
    ("GET", "/jobs/{job_id}", jobs.job_page, "read"),
    *(
        ("POST", f"/jobs/{{job_id}}/{action}", handler, "write")
        for action, handler in jobs.ACTIONS.items()
    ),
    # A preview changes nothing: the read scope does, as for POST /v1/schedules/preview.
    ("POST", "/jobs/{job_id}/schedule/preview", jobs.preview_schedule, "read"),
    ("POST", "/jobs/{job_id}/schedule", jobs.save_schedule, "write"),
    ("GET", "/dead-letters", letters.dead_letters_page, "read"),
    ("POST", "/dead-letters/replay", letters.replay, "write"),
    ("GET", "/pipeline", pipeline.pipeline_page, "read"),
)

# Scripts, styles and images only from the console itself; no inline script or style, no
# frames, forms only back to the console.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # A page's address (a cursor, a job id) is nobody else's business.
    "Referrer-Policy": "no-referrer",
}


def build_console(
    api: web.Application, settings: ConsoleSettings, history: LagHistory
) -> web.Application:
    """The console for ``api`` (built, not yet started); ``history`` samples while it runs."""
    app = web.Application(middlewares=[error_middleware, guard_middleware])
    app[AUTHENTICATES_ITSELF] = True
    app[DEPS], app[QUOTAS], app[METRICS] = api[DEPS], api[QUOTAS], api[METRICS]
    app[TENANTS], app[AUTHENTICATOR] = api[TENANTS], api[AUTHENTICATOR]
    app[CODEC] = SessionCodec(
        settings.console_session_keys, settings.console_session_s, settings.console_cookie_secure
    )
    if app[CODEC].ephemeral:
        log.warning(
            "console: KJS_CONSOLE_SESSION_KEYS is not set: sessions use a key made at start-up, "
            "so they end when this API process stops and work only with this one instance"
        )
    app[TEMPLATES] = environment()
    app[pipeline.HISTORY] = history
    app[pipeline.CATALOG] = api[DEPS].catalog
    access: dict[Handler, Access] = {}
    for method, path, handler, level in ROUTES:
        app.router.add_route(method, path, handler)
        access[handler] = level
    app[ACCESS] = access
    app.router.add_static("/static/", STATIC, append_version=False)
    app.on_response_prepare.append(_security_headers)

    async def sampling(_: web.Application) -> AsyncIterator[None]:
        async with history.running():
            yield

    app.cleanup_ctx.append(sampling)
    return app


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


def mount_console(api: web.Application) -> None:
    """``kjs api``: serve the console under ``/ui/``, sampling lag from the API process."""
    settings, kafka = load(ConsoleSettings), load(KafkaSettings)
    # The record reader assigns a fresh consumer on every sample; aiokafka logs each one.
    logging.getLogger("aiokafka.consumer.subscription_state").setLevel(logging.WARNING)
    history = LagHistory(monitor_for(kafka, LagOptions()), settings.console_lag_interval_s)
    console = build_console(api, settings, history)
    console[letters.LETTERS] = letters.DeadLetterSource(kafka, catalog(kafka))
    api.add_subapp(PATH, console)

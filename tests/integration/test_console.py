"""The web console in process, on the real API app and Postgres: login and sessions, CSRF and
origin checks, tenancy, read-only keys, service keys, the filtered job list and its pages.

(The browser tests, tests/acceptance/browser/, drive the same pages through chromium against
the whole system; these check the rules one by one, quickly.)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from pydantic import SecretStr

from api.app import build_app
from api.deps import ApiDeps
from api.keys import ActsFor, Authenticator, create_key
from api.publisher import CommandPublisher
from console.app import build_console
from console.lag_history import LagHistory
from console.pages_dead_letters import LETTERS, DeadLetterSource
from console.sessions import COOKIE
from core.settings import ConsoleSettings, KafkaSettings
from lag.monitor import LagMonitor
from lag.read import LagRead
from tests.conftest import make_api_key
from tests.support.api import api_deps
from topics.catalog import Catalog

pytestmark = pytest.mark.services

Client = TestClient[web.Request, web.Application]
T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class NoGroups:
    """A lag reader with nothing to read: these tests are about the pages, not Kafka."""

    async def read(self, groups: Mapping[str, Sequence[str]]) -> LagRead:
        return LagRead(at=datetime.now(UTC).timestamp(), groups=())


@pytest.fixture
async def client(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    topic_catalog: Catalog,
    kafka_settings: KafkaSettings,
) -> AsyncIterator[Client]:
    # No cache of verified keys: a revoked key is refused at once (test_a_revoked_key...).
    deps = ApiDeps(
        pool, publisher, topic_catalog, timedelta(seconds=60), authenticator=Authenticator(pool, 0)
    )
    api = build_app(deps)
    history = LagHistory(LagMonitor(NoGroups(), {}), interval_s=60)
    console = build_console(api, ConsoleSettings(), history)
    console[LETTERS] = DeadLetterSource(kafka_settings, topic_catalog)
    api.add_subapp("/ui/", console)
    async with TestClient(TestServer(api)) as c:
        yield c


def origin(client: Client) -> dict[str, str]:
    url = client.make_url("/")
    return {"Origin": f"{url.scheme}://{url.host}:{url.port}"}


async def login(client: Client, key: str) -> str:
    """Log in as the browser's form does; returns the CSRF token of the session's pages."""
    resp = await client.post(
        "/ui/login", data={"key": key, "next": "/ui/jobs"}, headers=origin(client)
    )
    assert resp.status == 200, await resp.text()
    page = await resp.text()
    token = CSRF.search(page)
    assert token is not None, page
    return token.group(1)


async def insert_job(
    pool: asyncpg.Pool,
    user_id: str,
    *,
    name: str = "nightly report",
    status: str = "scheduled",
    priority: str = "normal",
    schedule: dict[str, object] | None = None,
    created_at: datetime = T0,
) -> uuid.UUID:
    job_id = uuid.uuid4()
    schedule = schedule or {
        "type": "cron",
        "expression": "*/5 * * * *",
        "timezone": "Europe/Berlin",
    }
    await pool.execute(
        """INSERT INTO kjs_jobs (job_id, user_id, shard, name, schedule, target, priority, retry,
                                 status, next_run_at, source, created_at, updated_at)
           VALUES ($1, $2, 0, $3, $4, $5, $6, '{}', $7, $8, 'test', $9, $9)""",
        job_id,
        user_id,
        name,
        schedule,
        {
            "type": "http",
            "method": "POST",
            "url": "http://example.test/hook",
            "headers": {"Authorization": "Bearer very-secret-token"},
        },
        priority,
        status,
        created_at + timedelta(days=1) if status in ("scheduled", "paused") else None,
        created_at,
    )
    return job_id


async def test_login_sets_a_strict_http_only_session_cookie_and_shows_the_tenants_jobs(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await insert_job(pool, user_id, name="report for berlin")
    key = await make_api_key(pool, user_id)
    resp = await client.post(
        "/ui/login",
        data={"key": key, "next": "/ui/jobs"},
        headers=origin(client),
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/ui/jobs"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui/" in cookie
    assert key not in cookie and key[4:20] not in cookie  # sealed, never in clear

    page = await (await client.get("/ui/jobs")).text()
    assert "report for berlin" in page
    assert "every 5 minutes, Europe/Berlin" in page
    assert f'href="/ui/jobs/{job_id}"' in page
    assert user_id in page


async def test_a_bad_key_or_a_login_from_another_origin_is_refused(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    resp = await client.post("/ui/login", data={"key": "kjs_" + "x" * 43}, headers=origin(client))
    assert resp.status == 401
    assert COOKIE not in resp.cookies
    key = await make_api_key(pool, user_id)
    resp = await client.post("/ui/login", data={"key": key}, headers={"Origin": "http://evil.test"})
    assert resp.status == 403
    assert COOKIE not in resp.cookies


async def test_without_a_session_pages_ask_to_log_in_and_posts_are_refused(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    resp = await client.get("/ui/jobs?status=failed", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/ui/login?next=/ui/jobs%3Fstatus%3Dfailed"
    polled = await client.get("/ui/jobs", headers={"HX-Request": "true"}, allow_redirects=False)
    assert polled.headers["HX-Redirect"].startswith("/ui/login?next=")
    job_id = await insert_job(pool, user_id)
    resp = await client.post(f"/ui/jobs/{job_id}/pause", data={"csrf": "x"}, headers=origin(client))
    assert resp.status == 403
    # The API's own routes still want their bearer key: the console opens only /ui/.
    assert (await client.get("/v1/jobs")).status == 401


async def test_every_post_needs_the_sessions_csrf_token_and_the_consoles_origin(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await insert_job(pool, user_id)
    token = await login(client, await make_api_key(pool, user_id))
    url = f"/ui/jobs/{job_id}/pause"

    assert (await client.post(url, data={}, headers=origin(client))).status == 403
    wrong = await client.post(url, data={"csrf": token[:-2] + "xx"}, headers=origin(client))
    assert wrong.status == 403
    assert "CSRF" in await wrong.text()
    elsewhere = await client.post(url, data={"csrf": token}, headers={"Origin": "http://evil.test"})
    assert elsewhere.status == 403
    other_port = {"Origin": "http://127.0.0.1:1"}  # same site, another origin
    assert (await client.post(url, data={"csrf": token}, headers=other_port)).status == 403

    done = await client.post(
        url, data={"csrf": token}, headers=origin(client), allow_redirects=False
    )
    assert done.status == 303
    assert done.headers["Location"] == f"/ui/jobs/{job_id}?said=pause"
    header = await client.post(
        url, headers={**origin(client), "X-CSRF-Token": token}, allow_redirects=False
    )
    assert header.status == 303  # htmx sends the token as a header


async def test_another_tenants_job_is_the_same_not_found_page_as_an_unknown_one(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    theirs = await insert_job(pool, f"{user_id}-other", name="their secret job")
    token = await login(client, await make_api_key(pool, user_id))

    other = await client.get(f"/ui/jobs/{theirs}")
    unknown = await client.get(f"/ui/jobs/{uuid.uuid4()}")
    malformed = await client.get("/ui/jobs/not-a-uuid")
    assert other.status == unknown.status == malformed.status == 404
    assert await other.text() == await unknown.text() == await malformed.text()
    assert "their secret job" not in await other.text()
    for action in ("trigger", "pause", "resume", "cancel"):
        resp = await client.post(
            f"/ui/jobs/{theirs}/{action}", data={"csrf": token}, headers=origin(client)
        )
        assert resp.status == 404, action
    assert "their secret job" not in await (await client.get("/ui/jobs")).text()


async def test_a_refused_action_shows_the_apis_reason_and_status(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await insert_job(pool, user_id, status="paused")
    token = await login(client, await make_api_key(pool, user_id))
    resp = await client.post(
        f"/ui/jobs/{job_id}/pause", data={"csrf": token}, headers=origin(client)
    )
    assert resp.status == 409
    assert "Refused: cannot pause a job that is paused" in await resp.text()


async def test_a_read_only_key_sees_no_actions_and_is_refused_them(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await insert_job(pool, user_id)
    token = await login(client, await make_api_key(pool, user_id, ("read",)))
    page = await (await client.get(f"/ui/jobs/{job_id}")).text()
    assert "read-only key" in page
    assert 'id="action-' not in page and 'id="save-schedule"' not in page
    resp = await client.post(
        f"/ui/jobs/{job_id}/trigger", data={"csrf": token}, headers=origin(client)
    )
    assert resp.status == 403
    assert "lacks the write scope" in await resp.text()


async def test_the_job_page_shows_the_spec_redacted_and_the_coming_fire_times(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await insert_job(pool, user_id)
    await login(client, await make_api_key(pool, user_id))
    page = await (await client.get(f"/ui/jobs/{job_id}")).text()
    assert "very-secret-token" not in page
    assert "[redacted]" in page
    fires = page[page.index('id="fires"') : page.index('id="h-runs"')]
    assert fires.count("<tr><td>") == 10
    assert "CEST" in fires or "CET" in fires
    assert " UTC" in fires


async def test_the_schedule_editor_previews_then_saves(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await insert_job(pool, user_id)
    token = await login(client, await make_api_key(pool, user_id))
    form = {"csrf": token, "type": "cron", "expression": "30 2 * * *", "timezone": "Europe/Berlin"}
    preview = await client.post(
        f"/ui/jobs/{job_id}/schedule/preview", data=form, headers=origin(client)
    )
    assert preview.status == 200
    table = (await preview.text()).split('id="preview"')[1]
    assert table.count("<tr><td>") == 10
    bad = await client.post(
        f"/ui/jobs/{job_id}/schedule/preview",
        data={**form, "expression": "61 * * * *"},
        headers=origin(client),
    )
    assert bad.status == 422
    assert "not a valid 5- or 6-field cron expression" in await bad.text()
    extra = await client.post(
        f"/ui/jobs/{job_id}/schedule", data={**form, "sneaky": "1"}, headers=origin(client)
    )
    assert extra.status == 422  # unknown fields are refused
    saved = await client.post(
        f"/ui/jobs/{job_id}/schedule", data=form, headers=origin(client), allow_redirects=False
    )
    assert saved.status == 303
    assert saved.headers["Location"] == f"/ui/jobs/{job_id}?said=schedule"


async def test_the_list_filters_and_pages_newest_first(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    for i in range(60):
        await insert_job(
            pool,
            user_id,
            name=f"job-{i:02d}" + (" nightly" if i % 10 == 0 else ""),
            status="failed" if i % 3 == 0 else "scheduled",
            priority="critical" if i % 2 == 0 else "low",
            schedule={"type": "interval", "every_seconds": 60} if i % 5 == 0 else None,
            created_at=T0 + timedelta(minutes=i),
        )
    await login(client, await make_api_key(pool, user_id))

    def names(page: str) -> list[str]:
        return re.findall(r'href="/ui/jobs/[0-9a-f-]+">([^<]+)</a>', page)

    first = await (await client.get("/ui/jobs")).text()
    assert names(first)[:2] == ["job-59", "job-58"]
    assert len(names(first)) == 50
    next_link = re.search(r'href="/ui/jobs\?([^"]+)" id="next-page"', first)
    assert next_link is not None
    second = await (await client.get("/ui/jobs?" + next_link.group(1).replace("&amp;", "&"))).text()
    assert names(second) == [
        f"job-{i:02d}" + (" nightly" if i % 10 == 0 else "") for i in range(9, -1, -1)
    ]

    filtered = await client.get(
        "/ui/jobs", params={"status": "failed", "priority": "critical", "kind": "interval"}
    )
    assert names(await filtered.text()) == ["job-30 nightly", "job-00 nightly"]
    searched = await client.get("/ui/jobs", params={"q": "NIGHTLY", "status": "scheduled"})
    assert names(await searched.text()) == [
        "job-50 nightly",
        "job-40 nightly",
        "job-20 nightly",
        "job-10 nightly",
    ]
    bad = await client.get("/ui/jobs", params={"status": "sleeping"})
    assert bad.status == 422
    unknown = await client.get("/ui/jobs", params={"statuss": "failed"})
    assert unknown.status == 422


async def test_a_service_key_chooses_a_tenant_it_covers(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    await insert_job(pool, user_id, name="first tenants job")
    _, key = await create_key(pool, ActsFor(tenants=(user_id, f"{user_id}-b")), ["read"])
    resp = await client.post(
        "/ui/login",
        data={"key": key, "next": "/ui/jobs"},
        headers=origin(client),
        allow_redirects=False,
    )
    assert resp.headers["Location"] == "/ui/tenant?next=/ui/jobs"
    picker = await (await client.get("/ui/tenant?next=/ui/jobs")).text()
    token = CSRF.search(picker)
    assert token is not None
    assert (
        (await client.get("/ui/jobs", allow_redirects=False))
        .headers["Location"]
        .startswith("/ui/tenant")
    )
    refused = await client.post(
        "/ui/tenant",
        data={"csrf": token.group(1), "tenant": "someone-else"},
        headers=origin(client),
    )
    assert refused.status == 403
    chosen = await client.post(
        "/ui/tenant",
        data={"csrf": token.group(1), "tenant": user_id, "next": "/ui/jobs"},
        headers=origin(client),
    )
    assert chosen.status == 200
    assert "first tenants job" in await chosen.text()


async def test_a_revoked_key_ends_its_session(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    key = await make_api_key(pool, user_id)
    await login(client, key)
    assert (await client.get("/ui/jobs", allow_redirects=False)).status == 200
    await pool.execute("UPDATE kjs_api_keys SET revoked_at = now() WHERE user_id = $1", user_id)
    resp = await client.get("/ui/jobs", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/ui/login")
    assert resp.cookies[COOKIE].value == ""  # cleared


async def test_logging_out_works_after_the_key_was_revoked(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    token = await login(client, await make_api_key(pool, user_id))
    await pool.execute("UPDATE kjs_api_keys SET revoked_at = now() WHERE user_id = $1", user_id)

    resp = await client.post(
        "/ui/logout", data={"csrf": token}, headers=origin(client), allow_redirects=False
    )

    assert resp.status == 303
    assert resp.cookies[COOKIE].value == ""  # cleared


async def test_a_session_from_before_auth_was_disabled_is_refused(
    pool: asyncpg.Pool, publisher: CommandPublisher, topic_catalog: Catalog, user_id: str
) -> None:
    """With KJS_AUTH_DISABLED no credential names a tenant, so an older session (sealed with
    the same KJS_CONSOLE_SESSION_KEYS) must not act for anyone."""
    settings = ConsoleSettings(console_session_keys=[SecretStr(Fernet.generate_key().decode())])
    history = LagHistory(LagMonitor(NoGroups(), {}), interval_s=60)
    secured = build_app(api_deps(pool, publisher, topic_catalog))
    secured.add_subapp("/ui/", build_console(secured, settings, history))
    async with TestClient(TestServer(secured)) as c:
        await login(c, await make_api_key(pool, user_id))
        cookie = c.session.cookie_jar.filter_cookies(c.make_url("/ui/"))[COOKIE].value
    job_id = await insert_job(pool, user_id)
    opened = build_app(api_deps(pool, publisher, topic_catalog, auth_disabled=True))
    opened.add_subapp("/ui/", build_console(opened, settings, history))
    async with TestClient(TestServer(opened), cookies={COOKIE: cookie}) as c:
        page = await c.get(f"/ui/jobs/{job_id}", allow_redirects=False)
        text = await page.text()

    assert page.status == 403 and "KJS_AUTH_DISABLED" in text


async def test_the_cookie_is_secure_behind_a_tls_proxy_when_configured(
    pool: asyncpg.Pool, publisher: CommandPublisher, topic_catalog: Catalog, user_id: str
) -> None:
    api = build_app(api_deps(pool, publisher, topic_catalog))
    history = LagHistory(LagMonitor(NoGroups(), {}), interval_s=60)
    settings = ConsoleSettings(console_cookie_secure=True)
    api.add_subapp("/ui/", build_console(api, settings, history))
    async with TestClient(TestServer(api)) as c:
        resp = await c.post(
            "/ui/login",
            data={"key": await make_api_key(pool, user_id), "next": "/ui/jobs"},
            headers=origin(c),
            allow_redirects=False,
        )
        morsel = resp.cookies[COOKIE]

    assert morsel["secure"] is True and morsel["httponly"] is True


async def test_assets_ship_in_the_package_and_pages_forbid_inline_script(client: Client) -> None:
    htmx = await client.get("/ui/static/htmx.min.js")
    assert htmx.status == 200
    assert (await htmx.text()).startswith("var htmx=")
    page = await client.get("/ui/login")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["Cache-Control"] == "no-store"
    assert "<script>" not in await page.text()


async def test_ui_without_its_slash_goes_to_the_console(client: Client) -> None:
    resp = await client.get("/ui", allow_redirects=False)
    assert resp.status == 301
    assert resp.headers["Location"] == "/ui/"


async def test_a_form_with_a_field_the_server_does_not_read_is_refused(
    client: Client, pool: asyncpg.Pool, user_id: str
) -> None:
    job_id = await insert_job(pool, user_id)
    token = await login(client, await make_api_key(pool, user_id))
    resp = await client.post(
        f"/ui/jobs/{job_id}/pause", data={"csrf": token, "force": "yes"}, headers=origin(client)
    )
    assert resp.status == 422
    assert "force" in await resp.text()
    duplicated = await client.post(
        f"/ui/jobs/{job_id}/pause", data=[("csrf", token), ("csrf", token)], headers=origin(client)
    )
    assert duplicated.status == 422
    assert (await client.get("/ui/tenant", allow_redirects=False)).status == 303  # no choice


async def test_with_authentication_disabled_the_console_does_not_serve(
    pool: asyncpg.Pool, publisher: CommandPublisher, topic_catalog: Catalog, user_id: str
) -> None:
    deps = api_deps(pool, publisher, topic_catalog, auth_disabled=True)
    api = build_app(deps)
    history = LagHistory(LagMonitor(NoGroups(), {}), interval_s=60)
    api.add_subapp("/ui/", build_console(api, ConsoleSettings(), history))
    async with TestClient(TestServer(api)) as c:
        page = await (await c.get("/ui/login")).text()
        assert "KJS_AUTH_DISABLED" in page
        resp = await c.post(
            "/ui/login", data={"key": await make_api_key(pool, user_id)}, headers=origin(c)
        )
        assert resp.status == 503
        assert COOKIE not in resp.cookies

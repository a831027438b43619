"""Who may see and do what, in chromium: another tenant gets the same not-found page as for an
unknown job and cannot act on the job even with its own valid session and token; a page on
another site or another origin cannot make a logged-in browser act; a read-only key sees no
action and is refused them."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, Route, expect

from tests.acceptance.browser.conftest import Console, open_console
from tests.acceptance.conftest import Stack, Target, free_port
from tests.conftest import make_api_key

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

ACTIONS = ("trigger", "pause", "resume", "cancel")


async def scheduled_job(stack: Stack, target: Target, name: str) -> str:
    job_id: str = (
        await stack.submit(
            {
                "name": name,
                "schedule": {"type": "cron", "expression": "0 9 1 1 *", "timezone": "UTC"},
                "target": {"type": "http", "method": "GET", "url": target.url(name)},
            }
        )
    )["job_id"]
    await stack.wait_status(job_id, "scheduled")
    return job_id


async def test_another_tenant_can_neither_see_nor_act_on_the_job(
    browser: Browser, console: Console, stack: Stack, target: Target, pool: asyncpg.Pool
) -> None:
    job_id = await scheduled_job(stack, target, "console-private")
    other = f"{console.user_id}-other"
    stranger = await open_console(
        browser, stack, other, await make_api_key(pool, other), console.screenshots
    )
    try:
        page = stranger.page
        assert "console-private" not in await page.content()  # not in their list
        theirs = await page.goto(stranger.url(f"jobs/{job_id}"))
        assert theirs is not None and theirs.status == 404
        shown = await page.locator("main").inner_text()
        unknown = await page.goto(stranger.url(f"jobs/{uuid.uuid4()}"))
        assert unknown is not None and unknown.status == 404
        assert await page.locator("main").inner_text() == shown
        assert "console-private" not in shown
        await stranger.shot("not-found")

        # Their own session and CSRF token are valid; the job still is not theirs.
        token = await stranger.csrf()
        for action in ACTIONS:
            resp = await stranger.context.request.post(
                stranger.url(f"jobs/{job_id}/{action}"),
                form={"csrf": token},
                headers={"Origin": stack.api_url},
            )
            assert resp.status == 404, action
        resp = await stranger.context.request.post(
            stranger.url(f"jobs/{job_id}/schedule"),
            form={"csrf": token, "type": "interval", "every_seconds": "1"},
            headers={"Origin": stack.api_url},
        )
        assert resp.status == 404
    finally:
        await stranger.context.close()
    job = await stack.job(job_id)
    assert job is not None
    assert job["status"] == "scheduled" and job["run_count"] == 0
    assert job["schedule"]["type"] == "cron"


def attack_page(action_url: str) -> str:
    """A page elsewhere that posts a form to the console, as a CSRF attack would."""
    return (
        "<!doctype html><title>win a prize</title>"
        f'<form method="post" action="{action_url}"><button id="go">claim</button></form>'
    )


async def test_a_page_on_another_site_or_origin_cannot_act_for_the_logged_in_user(
    console: Console, stack: Stack, target: Target
) -> None:
    job_id = await scheduled_job(stack, target, "console-csrf")
    page = console.page
    action_url = console.url(f"jobs/{job_id}/pause")

    async def serve(route: Route) -> Any:
        await route.fulfill(content_type="text/html", body=attack_page(action_url))

    # Another site: the SameSite=Strict cookie stays home, so there is no session at all.
    # Another origin on the same site (127.0.0.1, another port): the cookie goes along, but
    # the Origin is not the console's and the form has no CSRF token.
    for evil in ("http://evil.test/prize", f"http://127.0.0.1:{free_port()}/prize"):
        await page.route(evil, serve)
        await page.goto(evil)
        async with page.expect_navigation() as navigation:
            await page.locator("#go").click()
        response = await navigation.value
        assert response is not None and response.status == 403, evil
        await expect(page.locator("#problem")).to_contain_text("refused")
    await console.shot("csrf-refused")

    # The same POST from the console's own page, with the token, is accepted.
    await console.goto(f"jobs/{job_id}")
    await page.locator("#action-pause").click()
    await expect(page.locator("#job-status")).to_have_text("paused", timeout=30_000)
    await stack.wait_status(job_id, "paused")


async def test_a_read_only_key_sees_no_action_and_is_refused_them(
    browser: Browser, console: Console, stack: Stack, target: Target, pool: asyncpg.Pool
) -> None:
    job_id = await scheduled_job(stack, target, "console-read-only")
    key = await make_api_key(pool, console.user_id, ("read",))
    reader = await open_console(browser, stack, console.user_id, key, console.screenshots)
    try:
        await reader.goto(f"jobs/{job_id}")
        page = reader.page
        await expect(page.locator("#job-status")).to_have_text("scheduled")
        await expect(page.locator("#read-only")).to_be_visible()
        await expect(page.locator("#actions")).to_have_count(0)
        await expect(page.locator("#editor")).to_have_count(0)
        token = await reader.csrf()
        for action in ACTIONS:
            resp = await reader.context.request.post(
                reader.url(f"jobs/{job_id}/{action}"),
                form={"csrf": token},
                headers={"Origin": stack.api_url},
            )
            assert resp.status == 403, action
            assert "lacks the write scope" in await resp.text()
    finally:
        await reader.context.close()
    job = await stack.job(job_id)
    assert job is not None and job["status"] == "scheduled"

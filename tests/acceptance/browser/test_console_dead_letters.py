"""Dead letters in the console, in chromium: a job whose target answers 400 fails for good and
lands in jobs.dlq; its tenant sees the letter (and no other tenant does), replays it from the
page, and the new run appears on the job's page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from playwright.async_api import Browser, expect

from tests.acceptance.browser.conftest import WAIT_MS, Console, open_console
from tests.acceptance.conftest import Stack, Target
from tests.conftest import make_api_key
from tests.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]


async def test_a_failed_job_is_a_dead_letter_that_the_page_replays(
    browser: Browser, console: Console, stack: Stack, target: Target, pool: asyncpg.Pool
) -> None:
    hook = f"dlq-{console.user_id}"
    target.answer(hook, (400, {}))  # a client error: not retried, straight to jobs.dlq
    job_id = (
        await stack.submit(
            {
                "name": "console-bad-request",
                "schedule": {
                    "type": "once",
                    "at": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
                },
                "target": {"type": "http", "method": "POST", "url": target.url(hook)},
            }
        )
    )["job_id"]
    await stack.wait_status(job_id, "failed")

    await console.goto("dead-letters")
    page = console.page
    letter = page.locator(f'#letters tr[data-job-id="{job_id}"]')

    async def listed() -> bool:
        # The page lists what jobs.dlq holds when it is loaded: load it again until it shows.
        await page.reload()
        return await letter.count() == 1

    await eventually(listed, 30, interval_s=0.5, what="the dead letter on the page")
    await expect(letter).to_contain_text("failed, not retryable")
    await expect(letter).to_contain_text(f"{stack.catalog.results.name}[")
    await letter.locator("summary").click()  # the record, shown in the screenshot
    await console.shot("dead-letters")

    # Another tenant sees none of it.
    other = f"{console.user_id}-other"
    stranger = await open_console(
        browser, stack, other, await make_api_key(pool, other), console.screenshots
    )
    try:
        await stranger.goto("dead-letters")
        await expect(stranger.page.locator("#letters")).to_be_visible()
        assert job_id not in await stranger.page.content()
    finally:
        await stranger.context.close()

    await letter.get_by_role("button", name="Replay as a new run").click()
    await expect(page).to_have_url(f"{stack.api_url}/ui/jobs/{job_id}?said=replay")
    await expect(page.locator("#notice")).to_contain_text("Replay sent")
    # The target answers 200 now (its one scripted 400 is used up): the replay succeeds.
    await expect(page.locator('#runs tr[data-status="succeeded"] .result')).to_have_text(
        "HTTP 200", timeout=WAIT_MS
    )
    await expect(page.locator('#runs tr[data-status="failed"] .result')).to_have_text("HTTP 400")
    assert len(target.calls(hook)) == 2

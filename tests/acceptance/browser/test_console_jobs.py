"""A job's life in the console, in chromium: it appears in the list, its page shows its spec and
coming fire times, and trigger, pause, resume and cancel act on it, each seen on the page and
in ``GET /v1/jobs/{id}``. Also: the pages work from the keyboard and at a phone's width."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.acceptance.browser.conftest import PHONE, WAIT_MS, Console, open_console
from tests.acceptance.conftest import Stack, Target
from tests.waiting import eventually

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]


def weekday_job(target: Target, name: str) -> dict[str, Any]:
    """A job that will not fire during the test on its own: only a trigger runs it."""
    return {
        "name": name,
        "schedule": {"type": "cron", "expression": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
        "target": {
            "type": "http",
            "method": "POST",
            "url": target.url(name),
            "headers": {"Authorization": "Bearer not-for-your-eyes"},
        },
    }


async def api_status(stack: Stack, job_id: str, wanted: str) -> None:
    await stack.wait_status(job_id, wanted)


async def test_a_job_is_listed_opened_triggered_paused_resumed_and_cancelled(
    console: Console, stack: Stack, target: Target
) -> None:
    job_id = (await stack.submit(weekday_job(target, "console-hello")))["job_id"]
    # Two more of other kinds, so the list (and its screenshot) shows each in words.
    later = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    for name, schedule in (
        ("console-every-5-min", {"type": "interval", "every_seconds": 300}),
        ("console-once", {"type": "once", "at": later.isoformat()}),
    ):
        await stack.submit(
            {
                "name": name,
                "priority": "low",
                "schedule": schedule,
                "target": {"type": "http", "method": "GET", "url": target.url(name)},
            }
        )
    page = console.page

    # The list shows it once the shard stored it (the table refreshes itself).
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    await expect(row).to_be_visible(timeout=WAIT_MS)
    await expect(row).to_contain_text("at 09:00, Monday to Friday, Europe/Berlin")
    await expect(row).to_contain_text("scheduled")
    await expect(page.locator("#jobs tbody tr")).to_have_count(3, timeout=WAIT_MS)
    await expect(page.locator("#jobs")).to_contain_text("every 5 minutes")
    await expect(page.locator("#jobs")).to_contain_text(f"once, at {later:%Y-%m-%d %H:%M:%S} UTC")
    await console.shot("jobs")

    await row.get_by_role("link", name="console-hello").click()
    await expect(page).to_have_url(re.compile(f"/ui/jobs/{job_id}$"))
    await expect(page.locator("#job-status")).to_have_text("scheduled")
    await expect(page.locator("#fires tbody tr")).to_have_count(10)
    assert "not-for-your-eyes" not in await page.content()
    # The key of the login link was in the fragment: in no request line, so in no log.
    assert console.key not in stack.processes["api"].log_path.read_text()

    await page.locator("#action-trigger").click()
    await expect(page.locator("#notice")).to_contain_text("Trigger sent")
    run = page.locator('#runs tr[data-status="succeeded"]')
    await expect(run.first.locator(".result")).to_have_text("HTTP 200", timeout=WAIT_MS)
    assert len(target.calls("console-hello")) == 1
    await console.shot("job")

    for action, status in (("pause", "paused"), ("resume", "scheduled"), ("cancel", "cancelled")):
        await page.locator(f"#action-{action}").click()
        await expect(page.locator("#job-status")).to_have_text(status, timeout=WAIT_MS)
        await api_status(stack, job_id, status)
    await expect(page.locator("#actions button")).to_have_count(0)  # nothing left to do


async def test_a_refused_action_shows_the_servers_reason(console: Console, stack: Stack) -> None:
    job = await stack.submit(
        {
            "name": "console-once",
            "schedule": {
                "type": "once",
                "at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            },
            "target": {"type": "http", "method": "GET", "url": "http://127.0.0.1:9/never"},
        }
    )
    await stack.wait_status(job["job_id"], "scheduled")
    await console.goto(f"jobs/{job['job_id']}")
    page = console.page
    # Paused meanwhile by another client: the page still offers pause, and the API refuses it.
    async with stack.http.post(f"{stack.api_url}/v1/jobs/{job['job_id']}/pause") as resp:
        assert resp.status == 202
    await stack.wait_status(job["job_id"], "paused")
    await page.locator("#action-pause").click()
    await expect(page.locator("#refusal")).to_have_text(
        "Refused: cannot pause a job that is paused", timeout=WAIT_MS
    )
    await console.shot("refused")


async def test_the_schedule_editor_previews_before_it_saves(
    console: Console, stack: Stack, target: Target
) -> None:
    job_id = (await stack.submit(weekday_job(target, "console-edit")))["job_id"]
    await stack.wait_status(job_id, "scheduled")
    await console.goto(f"jobs/{job_id}")
    page = console.page
    # Monthly on the 28th at 02:30 in Berlin: within ten months the clocks change, and on
    # 2027-03-28 02:30 does not exist at all (the preview marks both).
    await page.get_by_label("Cron expression").fill("30 2 28 * *")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#preview tbody tr")).to_have_count(10, timeout=WAIT_MS)
    await expect(page.get_by_label("Cron expression")).to_have_value("30 2 28 * *")
    await expect(page.locator("#preview")).to_contain_text("DST: clocks change")
    await console.shot("schedule-preview")

    await page.get_by_role("button", name="Save schedule").click()
    await expect(page.locator("#notice")).to_contain_text("New schedule sent")

    async def edited() -> bool:
        job = await stack.job(job_id)
        return job is not None and job["schedule"]["expression"] == "30 2 28 * *"

    await eventually(edited, 30, what="the new schedule to be stored")
    await expect(page.locator("#h-state + dl")).to_contain_text(
        "at 02:30, on day 28 of the month, Europe/Berlin", timeout=WAIT_MS
    )


async def test_the_console_works_from_the_keyboard(
    console: Console, stack: Stack, target: Target
) -> None:
    job_id = (await stack.submit(weekday_job(target, "console-keys")))["job_id"]
    page = console.page
    await expect(page.locator(f'tr[data-job-id="{job_id}"]')).to_be_visible(timeout=WAIT_MS)
    await page.keyboard.press("Tab")
    await expect(page.locator(":focus")).to_have_text("Skip to content")
    await page.keyboard.press("Enter")
    # From the top of the content, Tab walks the filters, then the jobs, newest first.
    for _ in range(30):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.textContent") == "console-keys":
            break
    await expect(page.locator(":focus")).to_have_text("console-keys")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(f"/ui/jobs/{job_id}$"))
    await expect(page.locator("#job-status")).to_have_text("scheduled")


async def test_the_pages_fit_a_phones_width(
    browser: Browser, console: Console, stack: Stack, target: Target
) -> None:
    job_id = (await stack.submit(weekday_job(target, "console-phone")))["job_id"]
    await stack.wait_status(job_id, "scheduled")
    phone = await open_console(
        browser, stack, console.user_id, console.key, console.screenshots, viewport=PHONE
    )
    try:
        for path in ("jobs", f"jobs/{job_id}", "dead-letters", "pipeline"):
            await phone.goto(path)
            overflow = await phone.page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"/ui/{path} is {overflow}px wider than a phone"
        await phone.goto("jobs")
        await expect(phone.page.get_by_role("link", name="console-phone")).to_be_visible()
        await phone.shot("phone-jobs", full_page=False)
    finally:
        await phone.context.close()

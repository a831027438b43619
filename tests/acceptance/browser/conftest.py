"""The console in a real browser: Debian's chromium, driven by Playwright, against the
acceptance stack (``kjs scheduler``, ``kjs worker``, ``kjs api`` as subprocesses; its fixtures
come from ``tests/acceptance/conftest.py``, so one stack serves both).

Playwright cannot download its own browser here: it drives the system's chromium
(``infra/system-deps.sh test`` installs it; ``TEST_CHROMIUM`` names another binary). Tests
wait with deadlines (Playwright's ``expect``, ``tests.waiting.eventually``), never with sleeps.
Each page a test visits can be saved as a screenshot (``Console.shot``) in a temp folder, or in
``CONSOLE_SCREENSHOTS`` when set (how docs/img/ was made).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.acceptance.conftest import Stack
from tests.conftest import make_api_key

# Long enough for a command to reach its shard and a poll (3-5 s) to show it.
WAIT_MS = 30_000
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def chromium() -> str:
    found = os.environ.get("TEST_CHROMIUM") or shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: `bash infra/system-deps.sh test` installs it")
    return found


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium(), headless=True)
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Console:
    """One browser context logged in to the console as a tenant."""

    stack: Stack
    context: BrowserContext
    page: Page
    user_id: str
    key: str
    screenshots: Path

    def url(self, path: str) -> str:
        return f"{self.stack.api_url}/ui/{path.lstrip('/')}"

    async def goto(self, path: str) -> None:
        response = await self.page.goto(self.url(path))
        assert response is not None

    async def shot(self, name: str, full_page: bool = True) -> Path:
        path = self.screenshots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=full_page)
        return path

    async def csrf(self) -> str:
        """The session's CSRF token, as the page's forms carry it."""
        token = await self.page.locator('input[name="csrf"]').first.get_attribute("value")
        assert token
        return token


async def open_console(
    browser: Browser,
    stack: Stack,
    user_id: str,
    key: str,
    screenshots: Path,
    viewport: dict[str, int] | None = None,
) -> Console:
    """Log in as `kjs dev`'s link does: the key in the fragment, taken out by the page."""
    context = await browser.new_context(viewport=viewport or DESKTOP)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(f"{stack.api_url}/ui/#key={key}")
    await expect(page).to_have_url(re.compile(r"/ui/jobs$"), timeout=WAIT_MS)
    assert "key=" not in page.url
    return Console(stack, context, page, user_id, key, screenshots)


@pytest.fixture
async def console(
    browser: Browser, stack: Stack, pool: asyncpg.Pool, user_id: str, screenshots: Path
) -> AsyncIterator[Console]:
    """The test's tenant (the one ``stack.http`` acts for), logged in with a read-write key."""
    key = await make_api_key(pool, user_id)
    opened = await open_console(browser, stack, user_id, key, screenshots)
    yield opened
    await opened.context.close()

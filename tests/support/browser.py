"""The portal in a real browser: Debian's Chromium driven by Playwright (async API)
against the app on a real uvicorn server with the real models.

:func:`portal` starts both and hands back a :class:`Portal`: the served app
(:class:`tests.support.app.ServedApi`), the browser, and helpers to make people
(:meth:`Portal.person`) and open a page signed in as one (:meth:`Portal.signed_in`),
each in a browser context of its own (its own cookies), so two moderators in one test
are two independent browsers.

Chromium is never downloaded: it is ``/usr/bin/chromium`` (``apt-get install
chromium``) or ``BASTION_CHROMIUM``. Without it the tests skip, except under
``REQUIRE_TEST_SERVICES=1`` (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from bastion.config import Settings
from bastion.pipeline.engine import Engine
from bastion.store.repo import DEFAULT_TENANT
from tests.support.app import ServedApi, serving

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def chromium_path() -> str:
    """Chromium's executable, or skip (fail in CI) when it is not installed."""
    path = os.environ.get("BASTION_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        message = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("REQUIRE_TEST_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass(frozen=True)
class Credentials:
    tenant: str
    username: str
    password: str
    role: str
    user_id: str


@dataclass
class Portal:
    """The served app and a browser to use the portal with."""

    api: ServedApi
    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.api.base}/portal"

    async def person(
        self, role: str = "moderator", *, tenant: str = DEFAULT_TENANT, name: str | None = None
    ) -> Credentials:
        """A new user of ``tenant`` with ``role`` and a strong random password."""
        username = name or f"{role}-{secrets.token_hex(4)}"
        password = "pw-" + secrets.token_urlsafe(18)
        user = await asyncio.to_thread(
            self.api.services.accounts.create_user, tenant, username, password, role
        )
        return Credentials(tenant, username, password, role, user.id)

    async def new_page(self) -> Page:
        """A page in a fresh browser context (no cookies)."""
        context = await self.browser.new_context(viewport={"width": 1400, "height": 900})
        self.contexts.append(context)
        return await context.new_page()

    async def sign_in(self, page: Page, who: Credentials, path: str = "/portal") -> None:
        """Fill in the sign-in form on ``page`` and land on ``path``."""
        await page.goto(f"{self.api.base}/portal/login?next={path}")
        await page.fill("input[name=tenant]", who.tenant)
        await page.fill("input[name=username]", who.username)
        await page.fill("input[name=password]", who.password)
        async with page.expect_navigation():
            await page.click("button[type=submit]")

    async def signed_in(self, role: str = "moderator", path: str = "/portal", **kw: str) -> Page:
        """A new browser context signed in as a new person with ``role``, at ``path``."""
        who = await self.person(role, **kw)
        page = await self.new_page()
        await self.sign_in(page, who, path)
        return page


def portal_settings(settings: Settings) -> Settings:
    """``settings`` with the session cookie allowed over plain HTTP (loopback tests)."""
    accounts = settings.accounts.model_copy(update={"cookie_secure": False})
    return settings.model_copy(update={"accounts": accounts})


async def screenshot(page: Page, name: str) -> Path:
    """A screenshot of what the page shows, as a JPEG in docs/screenshots (the README
    shows them; every run of the browser tests takes them anew)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.jpg"
    await page.screenshot(path=str(path), type="jpeg", quality=80, full_page=False)
    return path


@asynccontextmanager
async def portal(settings: Settings, engine: Engine | None = None) -> AsyncIterator[Portal]:
    """The app served on loopback (session cookies over HTTP allowed) and Chromium."""
    executable = chromium_path()
    async with serving(portal_settings(settings), engine) as api, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        shown = Portal(api, browser)
        try:
            yield shown
        finally:
            for context in shown.contexts:
                await context.close()
            await browser.close()

"""What the browser tests share: finding a Chromium, screenshots per step, the network log that proves the
console loads nothing from outside, signing in, and confirming residents the way a cadre does."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = (
    "no Chromium binary found: install it with `apt-get install -y chromium` (Debian/Ubuntu) "
    "or point CHROMIUM_PATH at one; never `playwright install` (it downloads from a CDN)"
)


def chromium_path() -> str | None:
    """The Chromium to drive: $CHROMIUM_PATH if it exists, else the first on PATH, else None."""
    configured = os.environ.get("CHROMIUM_PATH", "")
    if configured and Path(configured).is_file():
        return configured
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class Shots:
    """Saves a numbered full-page screenshot per step into build/screenshots/<test>/."""

    folder: Path
    taken: list[Path] = field(default_factory=list)

    async def __call__(self, page: Any, step: str) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{step}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@dataclass
class NetworkLog:
    """Every request any page of a browser context made, to prove they all went to the service itself."""

    origin: str
    urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # uncaught JavaScript errors of any page

    def record(self, request: Any) -> None:
        self.urls.append(str(request.url))

    def page_error(self, error: Any) -> None:
        self.errors.append(str(error))

    def foreign(self) -> list[str]:
        """Requests to anything but the service's own origin (data:/blob:/about: stay in the page)."""
        own = urlsplit(self.origin)
        outside = []
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about"):
                continue
            if (parts.scheme, parts.netloc) != (own.scheme, own.netloc):
                outside.append(url)
        return outside


async def sign_in(page: Any, base: str, name: str, password: str, next_path: str = "/") -> None:
    """Sign in through the (Chinese) login form as a person would; fails with what the page said if
    refused."""
    await page.goto(f"{base}/login?next={next_path}")
    button = await page.inner_text("#login-submit")
    assert "登录" in button, f"the login page is not in Chinese (zh-CN first): {button!r}"
    await page.fill("#username", name)
    await page.fill("#password", password)
    async with page.expect_navigation():
        await page.click("#login-submit")
    if urlsplit(page.url).path == "/login":
        raise AssertionError(f"login as {name} was refused: {(await page.inner_text('body'))[:300]}")


RESIDENT_FIELD = re.compile(r'name="resident_id" value="([^"]+)"')


async def confirm_residents(
    base: str, operator_token: str, alert_id: str, residents: Iterable[str], outcome: str = "reached"
) -> list[str]:
    """Confirm `residents` as their cadres do: the task links from the API, then each cadre page's
    confirm form. Returns the residents confirmed (in order); fails if one is on no cadre's page."""
    wanted = list(residents)
    done: list[str] = []
    auth = {"Authorization": f"Bearer {operator_token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/api/v1/alerts/{alert_id}/tasks", headers=auth) as response:
            assert response.status == 200, await response.text()
            tasks = (await response.json())["tasks"]
        for task in tasks:
            link = task["link"]
            async with session.get(link) as response:
                assert response.status == 200, (link, response.status)
                listed = set(RESIDENT_FIELD.findall(await response.text()))
            for resident in [r for r in wanted if r in listed and r not in done]:
                async with session.post(
                    f"{link}/confirm",
                    data={"resident_id": resident, "outcome": outcome},
                    headers={"Accept": "application/json"},
                    allow_redirects=False,
                ) as response:
                    assert response.status in (200, 303), (resident, response.status, await response.text())
                done.append(resident)
    missing = [r for r in wanted if r not in done]
    assert not missing, f"on no cadre's task page: {missing}"
    return done


async def wait_until(check: Any, within: float, what: str, every: float = 0.2) -> Any:
    """Poll the coroutine function `check` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"{what}: not within {within} s (last: {last!r})")

"""The admin page on tokbot's real web server (loopback), over a Core with the TokModel
stand-in and a real database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from adapters.admin import mount
from adapters.web import WebServer
from bot.core import Core
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.tokmodel.fake import FakeTokModel
from tests.conftest import API_KEY

PASSWORD = "correct horse battery staple"


@dataclass
class AdminSite:
    url: str  # .../admin
    core: Core
    settings: Settings


@pytest.fixture
async def admin_site(
    make_settings: Callable[..., Settings], fake: FakeTokModel
) -> AsyncIterator[AdminSite]:
    settings = make_settings(TOKBOT_ADMIN_PASSWORD=PASSWORD, TOKBOT_ADMIN_LOCKOUT_MINUTES="1")
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        server = WebServer("127.0.0.1", 0, metrics=core.metrics)
        assert mount(server, core, settings)
        await server.start()
        try:
            yield AdminSite(f"http://127.0.0.1:{server.port}/admin", core, settings)
        finally:
            await server.stop()


def browser(**options: Any) -> aiohttp.ClientSession:
    """A client that keeps cookies as a browser does (aiohttp's default jar refuses cookies
    from IP addresses such as 127.0.0.1)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), **options)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def log_in(
    http: aiohttp.ClientSession, url: str, password: str = PASSWORD
) -> aiohttp.ClientResponse:
    async with http.get(f"{url}/login") as page:
        token = csrf_of(await page.text())
    async with http.post(
        f"{url}/login", data={"csrf": token, "password": password}, allow_redirects=False
    ) as response:
        await response.read()
        return response

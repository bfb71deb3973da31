"""The admin page on tokbot's real web server (loopback), over a Core with the TokModel
stand-in and a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

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

"""Discord fixtures: the loopback fake of Discord and the real adapter connected to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from adapters.discord.fake import FakeDiscord
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.tokmodel.fake import FakeTokModel
from tests.conftest import API_KEY

TOKEN = "discord-test-token"
Start = Callable[..., Awaitable[DiscordAdapter]]
ADMIN_ROLE = 555


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord(TOKEN)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def discord_settings(
    make_settings: Callable[..., Settings], discord_fake: FakeDiscord
) -> Callable[..., Settings]:
    def build(**overrides: str) -> Settings:
        env: dict[str, Any] = {
            "DISCORD_TOKEN": TOKEN,
            "DISCORD_API_BASE": discord_fake.api_base,
            "DISCORD_GATEWAY_URL": discord_fake.gateway_url,
            "DISCORD_ADMIN_ROLE_IDS": str(ADMIN_ROLE),
            "TOKBOT_STREAM_EDIT_INTERVAL": "0.05",
        }
        env.update(overrides)
        return make_settings(**env)

    return build


@pytest.fixture
async def start_adapter(
    discord_settings: Callable[..., Settings], fake: FakeTokModel
) -> AsyncIterator[Callable[..., Awaitable[DiscordAdapter]]]:
    """`await start_adapter(**env)` → a started DiscordAdapter (stopped after the test)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: str) -> DiscordAdapter:
            settings = discord_settings(**overrides)
            core = await stack.enter_async_context(
                open_core(settings, TokModelEndpoint(fake.url, API_KEY))
            )
            adapter = DiscordAdapter(core, settings, guild_ready_timeout=0.05)
            stack.push_async_callback(adapter.stop)
            await adapter.start()
            return adapter

        yield start


@pytest.fixture
async def adapter(start_adapter: Callable[..., Awaitable[DiscordAdapter]]) -> DiscordAdapter:
    return await start_adapter()

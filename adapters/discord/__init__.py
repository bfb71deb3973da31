"""The Discord adapter (being built)."""

from __future__ import annotations

from adapters.web import WebServer
from bot.core import Core
from bot.settings import Settings, SettingsError


class DiscordAdapter:
    name = "discord"

    def __init__(self, core: Core, settings: Settings, web: WebServer | None = None) -> None:
        raise SettingsError("the Discord adapter is not built yet")

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def healthy(self) -> bool:
        return False

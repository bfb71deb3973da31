"""One GET of Discord's REST API with the bot token, for the commands that ask before the
client connects (`tokbot discord-invite`, `tokbot run --workers N`)."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.settings import Settings, SettingsError

DEFAULT_API_BASE = "https://discord.com/api/v10"


async def get_json(settings: Settings, path: str, *, no_token: str, asking: str) -> Any:
    """GET `path` with DISCORD_TOKEN; a missing or rejected token, or a failed request, is a
    SettingsError that says what to do (`no_token`) or what was being asked (`asking`)."""
    from adapters.discord import api_base

    if settings.discord_token is None or not settings.discord_token.get_secret_value():
        raise SettingsError(no_token)
    base = api_base(settings.discord_api_base or DEFAULT_API_BASE)
    headers = {"Authorization": "Bot " + settings.discord_token.get_secret_value()}
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(base + path, headers=headers) as resp:
                if resp.status == 401:
                    raise SettingsError(
                        "DISCORD_TOKEN was rejected by Discord (401): copy the bot token again "
                        "from the Developer Portal → your application → Bot → Reset Token"
                    )
                resp.raise_for_status()
                return await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise SettingsError(f"could not ask Discord {asking}: {exc}") from None

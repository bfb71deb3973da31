"""What Discord's gateway says before connecting: how many shards it recommends."""

from __future__ import annotations

import aiohttp

from bot.settings import Settings, SettingsError

DEFAULT_API_BASE = "https://discord.com/api/v10"


async def recommended_shards(settings: Settings) -> int:
    """The shard count Discord recommends for the bot: GET /gateway/bot answers
    {"url", "shards", "session_start_limit"}
    (discord.com/developers/docs/events/gateway#get-gateway-bot)."""
    from adapters.discord import api_base

    if settings.discord_token is None or not settings.discord_token.get_secret_value():
        raise SettingsError("DISCORD_TOKEN is not set")
    base = api_base(settings.discord_api_base or DEFAULT_API_BASE)
    headers = {"Authorization": "Bot " + settings.discord_token.get_secret_value()}
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(base + "/gateway/bot", headers=headers) as resp:
                if resp.status == 401:
                    raise SettingsError(
                        "DISCORD_TOKEN was rejected by Discord (401): copy the bot token again "
                        "from the Developer Portal → your application → Bot → Reset Token"
                    )
                resp.raise_for_status()
                data = await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise SettingsError(f"could not ask Discord how many shards to run: {exc}") from None
    return max(1, int(data.get("shards") or 1))

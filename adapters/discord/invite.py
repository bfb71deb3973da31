"""`tokbot discord-invite`: the OAuth2 URL that adds the bot to a server with what it needs."""

from __future__ import annotations

from urllib.parse import urlencode

import aiohttp

from bot.settings import Settings, SettingsError

DEFAULT_API_BASE = "https://discord.com/api/v10"
SCOPES = ("bot", "applications.commands")
#: View Channels, Send Messages, Attach Files, Read Message History, Send Messages in Threads.
PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 15) | (1 << 16) | (1 << 38)


def invite_url(client_id: int | str) -> str:
    query = urlencode(
        {"client_id": str(client_id), "scope": " ".join(SCOPES), "permissions": PERMISSIONS}
    )
    return f"https://discord.com/oauth2/authorize?{query}"


async def fetch_client_id(settings: Settings) -> str:
    """The application id, from GET oauth2/applications/@me with DISCORD_TOKEN."""
    from adapters.discord import api_base

    if settings.discord_token is None or not settings.discord_token.get_secret_value():
        raise SettingsError("give --client-id, or set DISCORD_TOKEN so I can look it up")
    base = api_base(settings.discord_api_base or DEFAULT_API_BASE)
    headers = {"Authorization": "Bot " + settings.discord_token.get_secret_value()}
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(base + "/oauth2/applications/@me", headers=headers) as resp:
                if resp.status == 401:
                    raise SettingsError("DISCORD_TOKEN was rejected by Discord (401)")
                resp.raise_for_status()
                data = await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise SettingsError(f"could not ask Discord for the application id: {exc}") from None
    return str(data["id"])


async def invite(settings: Settings, client_id: str | None) -> str:
    return invite_url(client_id or await fetch_client_id(settings))

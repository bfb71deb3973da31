"""`tokbot discord-invite`: the OAuth2 URL that adds the bot to a server with what it needs."""

from __future__ import annotations

from urllib.parse import urlencode

from adapters.discord.rest import get_json
from bot.settings import Settings

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
    data = await get_json(
        settings,
        "/oauth2/applications/@me",
        no_token="give --client-id, or set DISCORD_TOKEN so I can look it up",
        asking="for the application id",
    )
    return str(data["id"])


async def invite(settings: Settings, client_id: str | None) -> str:
    return invite_url(client_id or await fetch_client_id(settings))

"""What Discord's gateway says before connecting: how many shards it recommends."""

from __future__ import annotations

from adapters.discord.rest import get_json
from bot.settings import Settings


async def recommended_shards(settings: Settings) -> int:
    """The shard count Discord recommends for the bot: GET /gateway/bot answers
    {"url", "shards", "session_start_limit"}
    (discord.com/developers/docs/events/gateway#get-gateway-bot)."""
    data = await get_json(
        settings,
        "/gateway/bot",
        no_token="DISCORD_TOKEN is not set",
        asking="how many shards to run",
    )
    return max(1, int(data.get("shards") or 1))

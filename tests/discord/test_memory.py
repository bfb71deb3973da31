"""Team memory on Discord: the real discord.py client keeps guild messages (MESSAGE_CREATE,
UPDATE, DELETE from the fake gateway), and /recall and mentions find them with their links."""

from __future__ import annotations

import asyncio
import time

from adapters.discord import DiscordAdapter
from adapters.discord.fake import FakeDiscord
from bot.domain import ConversationKey
from tests.discord.conftest import ADMIN_ROLE
from tests.discord.helpers import answer, reply

BOT = "<@900000000000000001>"
FACT = "Decision: the deploy window is Tuesday 14:00 UTC, never Fridays."
FILLER = 60


async def remembered(adapter: DiscordAdapter, key: ConversationKey, count: int) -> None:
    """Wait until the channel holds `count` kept messages (observing runs after the event)."""
    deadline = time.monotonic() + 10
    while await adapter.client.core.memory.count(key) != count:
        assert time.monotonic() < deadline, "the messages were not kept in time"
        await asyncio.sleep(0.02)


async def test_guild_messages_are_remembered_edited_deleted_and_recalled_with_links(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    on = await discord_fake.interaction("memory", {"action": "on"}, roles=(ADMIN_ROLE,))
    await answer(discord_fake, on, "Team memory is on here")
    key = ConversationKey("discord", str(discord_fake.guild_id), str(discord_fake.channel_id))

    fact = await discord_fake.message(FACT, user_id=222, user_name="bob")
    secret = await discord_fake.message("launch codeword is pineapple", user_id=222)
    typo = await discord_fake.message("rollback plan: none yet", user_id=222)
    for n in range(FILLER):
        await discord_fake.message(f"filler {n}: lunch and coffee", user_id=222)
    await discord_fake.message("a bot's chatter about the deploy", user_id=333, bot=True)
    await remembered(adapter, key, FILLER + 3)
    await discord_fake.edit_message(typo, "rollback plan: revert the tag")
    await discord_fake.delete_message(secret)
    await remembered(adapter, key, FILLER + 2)

    link = f"https://discord.com/channels/{discord_fake.guild_id}/{fact['channel_id']}/{fact['id']}"
    found = await discord_fake.interaction("recall", {"words": "deploy window"})
    [shown] = await answer(discord_fake, found, "What this channel said")
    assert "deploy window is Tuesday" in shown.content and link in shown.content
    assert "a bot's chatter" not in shown.content
    found = await discord_fake.interaction("recall", {"words": "rollback pineapple"})
    [shown] = await answer(discord_fake, found, "What this channel said")
    assert "revert the tag" in shown.content and "codeword" not in shown.content

    mention = await discord_fake.message(f"{BOT} when is our deploy window?", mention_bot=True)
    sent = await reply(discord_fake, mention, "Sources:")
    assert link in sent[-1].content

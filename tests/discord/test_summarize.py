"""/summarize on Discord: the app command, in a channel and in a thread (its own conversation)."""

from __future__ import annotations

from adapters.discord import DiscordAdapter
from adapters.discord.fake import FakeDiscord
from tests.discord.helpers import answer


async def test_summarize_a_channel_and_a_thread(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    ask = await discord_fake.interaction("ask", {"question": "The budget is 300 euros."})
    await answer(discord_fake, ask, "You said:")
    thread = discord_fake.thread_id
    in_thread = await discord_fake.interaction(
        "ask", {"question": "The venue is Lisbon."}, channel_id=thread
    )
    await answer(discord_fake, in_thread, "You said:")

    day = await discord_fake.interaction("summarize")
    [shown] = await answer(discord_fake, day, "Summary of this channel over the last 24h")
    assert "300 euros" in shown.content and "Lisbon" in shown.content  # its thread too
    assert discord_fake.interaction_responses[day["id"]] == [{"type": 5}]  # deferred, public

    only = await discord_fake.interaction("summarize", {"span": "thread"}, channel_id=thread)
    [shown] = await answer(discord_fake, only, "Summary of this thread")
    assert "Lisbon" in shown.content and "300 euros" not in shown.content

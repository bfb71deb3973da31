"""The buttons under answers on Discord, with the real discord.py against the fake: 👍/👎 stored,
replaced and counted, Stop mid-stream by the asker only, and clicks that still work after a
restart (persistent `DynamicItem`s)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from adapters.discord import DiscordAdapter
from adapters.discord.fake import EPHEMERAL_FLAG, FakeDiscord, FakeMessage, JSONDict
from bot.core import Core
from bot.domain import ConversationKey, Turn, TurnRole, TurnStatus
from bot.handlers.chat import STOPPED_MARK
from bot.tokmodel.fake import FakeTokModel

Start = Callable[..., Awaitable[DiscordAdapter]]
ALICE, BOB = 111, 222
#: The fake's #general (FakeDiscord.guild_id, channel_id).
KEY = ConversationKey("discord", "800000000000000001", "810000000000000001")


def custom_ids(message: FakeMessage) -> list[str]:
    return [item["custom_id"] for row in message.components for item in row["components"]]


def core_of(adapter: DiscordAdapter) -> Core:
    assert adapter.client is not None
    return adapter.client.core


async def acknowledgement(fake: FakeDiscord, click: JSONDict) -> str:
    """The private reply to a click: a type 4 response only the clicker sees."""
    await fake.wait_for(lambda: bool(fake.interaction_responses.get(click["id"])))
    [response] = fake.interaction_responses[click["id"]]
    assert response["type"] == 4 and response["data"]["flags"] & EPHEMERAL_FLAG
    [shown] = fake.replies_to(click)
    assert shown.ephemeral
    return shown.content


async def test_feedback_is_stored_counted_replaced_and_survives_a_restart(
    start_adapter: Start, discord_fake: FakeDiscord
) -> None:
    adapter = await start_adapter()
    asked = await discord_fake.interaction("ask", {"question": "hello?"})
    await discord_fake.wait_for(
        lambda: any("feedback" in str(custom_ids(m)) for m in discord_fake.replies_to(asked))
    )
    [answer] = discord_fake.replies_to(asked)
    positive, negative = custom_ids(answer)
    turn_id = int(positive.rsplit(":", 1)[1])
    assert (positive, negative) == (
        f"tokbot:feedback:positive:{turn_id}",
        f"tokbot:feedback:negative:{turn_id}",
    )

    thanks = await acknowledgement(discord_fake, await discord_fake.click(answer.id, positive))
    assert thanks.startswith("👍")
    changed = await acknowledgement(discord_fake, await discord_fake.click(answer.id, negative))
    assert changed.startswith("👎") and "replaces your earlier feedback" in changed
    metrics = core_of(adapter).metrics.exposition().decode()
    assert 'tokbot_feedback_total{platform="discord",value="positive"} 1.0' in metrics
    assert 'tokbot_feedback_total{platform="discord",value="negative"} 1.0' in metrics

    await adapter.stop()  # a restart: the new client never saw this message
    restarted = await start_adapter()
    click = await discord_fake.click(answer.id, positive, user_id=BOB, user_name="bob")
    assert (await acknowledgement(discord_fake, click)).startswith("👍")
    [channel] = await core_of(restarted).store.feedback_by_channel(platform="discord")
    assert (channel.answers, channel.positive, channel.negative) == (1, 1, 1)


async def test_the_asker_stops_a_streaming_answer_and_a_stranger_cannot(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    fake.set_reply("word " * 400)
    fake.chunk_delay = 0.02  # about 8 s in all: it is stopped long before
    asked = await discord_fake.message(
        f"<@{discord_fake.application_id}> talk a lot", mention_bot=True, user_id=ALICE
    )

    def streaming() -> FakeMessage | None:
        found = [m for m in discord_fake.in_channel() if m.reply_to == asked["id"]]
        return found[0] if found and "word" in found[0].content else None

    await discord_fake.wait_for(lambda: streaming() is not None)
    answer = streaming()
    assert answer is not None
    [stop] = custom_ids(answer)
    assert stop.startswith("tokbot:stop:")

    refused = await discord_fake.click(answer.id, stop, user_id=BOB, user_name="bob")
    assert await acknowledgement(discord_fake, refused) == (
        "Only the person who asked can stop this answer."
    )
    stopped = await discord_fake.click(answer.id, stop, user_id=ALICE)
    assert await acknowledgement(discord_fake, stopped) == "⏹️ Stopped."
    await discord_fake.wait_for(lambda: answer.content.endswith(STOPPED_MARK))
    await discord_fake.wait_for(lambda: "tokbot:feedback" in "".join(custom_ids(answer)))

    store = core_of(adapter).store

    async def stored() -> Turn:
        return [t for t in await store.history(KEY) if t.role is TurnRole.ASSISTANT][-1]

    async with asyncio.timeout(5):  # stored right after the message is finished
        while (turn := await stored()).status is TurnStatus.PENDING:
            await asyncio.sleep(0.02)
    assert turn.status is TurnStatus.STOPPED
    assert turn.content == answer.content.removesuffix(STOPPED_MARK)
    assert len(turn.content) < len("word " * 400) - 50

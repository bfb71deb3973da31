"""Replies that concern only the asker are ephemeral on Discord; answers stay public."""

from __future__ import annotations

from adapters.discord import DiscordAdapter
from adapters.discord.fake import EPHEMERAL_FLAG, MANAGE_GUILD, FakeDiscord, FakeMessage
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.discord.helpers import answer, reply

BOT = "<@900000000000000001>"


def _seen_by_all(messages: list[FakeMessage]) -> list[FakeMessage]:
    return [m for m in messages if not m.ephemeral]


async def test_help_and_usage_are_deferred_and_answered_ephemerally(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    for name, shown in (("help", "/imagine"), ("usage", "📊 Usage")):
        inter = await discord_fake.interaction(name)
        (sent,) = await answer(discord_fake, inter, shown)
        response = discord_fake.interaction_responses[inter["id"]]
        assert response == [{"type": 5, "data": {"flags": EPHEMERAL_FLAG}}]
        assert sent.ephemeral and sent.payload["flags"] & EPHEMERAL_FLAG


async def test_a_refusal_replaces_the_public_thinking_message_with_an_ephemeral_one(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    inter = await discord_fake.interaction("model", {"id": "openai/gpt-4o"})
    (refusal,) = await answer(discord_fake, inter, "Only admins can")
    assert refusal.ephemeral and refusal.via == "followup"
    assert discord_fake.interaction_responses[inter["id"]] == [{"type": 5}]  # public thinking…
    assert [m.interaction_token for m in discord_fake.deleted] == [inter["token"]]
    assert _seen_by_all(discord_fake.replies_to(inter)) == []


async def test_an_error_of_a_slash_command_is_ephemeral(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    fake.fail(Fault(status=500, times=-1, path="/v1beta/models"))
    inter = await discord_fake.interaction(
        "model", {"id": "openai/gpt-4o"}, permissions=MANAGE_GUILD
    )
    (error,) = await answer(discord_fake, inter, "TokModel failed")
    assert error.ephemeral
    assert _seen_by_all(discord_fake.replies_to(inter)) == []


async def test_answers_stay_public(adapter: DiscordAdapter, discord_fake: FakeDiscord) -> None:
    inter = await discord_fake.interaction("ask", {"question": "public please"})
    (sent,) = await answer(discord_fake, inter, "public please")
    assert not sent.ephemeral and discord_fake.deleted == []


async def test_a_refused_mention_is_answered_in_the_channel(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    """Without an interaction Discord has no ephemeral message: the refusal is a reply."""
    msg = await discord_fake.message(f"{BOT} /model openai/gpt-4o", mention_bot=True)
    (sent,) = await reply(discord_fake, msg, "Only admins can")
    assert sent.reply_to == msg["id"] and not sent.ephemeral


async def test_an_unknown_slash_command_is_refused_ephemerally(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    inter = await discord_fake.interaction("no-such-command")
    (sent,) = await answer(discord_fake, inter, "I don't know that command")
    assert sent.ephemeral

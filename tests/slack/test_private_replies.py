"""Replies that concern only the asker are private (issue 11, item 11): a slash command's through
its response_url, a mention's through chat.postEphemeral in its thread; answers stay public."""

from __future__ import annotations

import json

from bot.tokmodel.fake import FakeTokModel, Fault
from tests.slack.conftest import ADA, ALICE, CHANNEL, Bot


async def private_reply(bot: Bot, count: int, user: str = ALICE) -> str:
    """The asker's `count`-th private message, once the work has ended."""
    return (await bot.private_replies(count, user))[count - 1]


async def test_help_and_usage_are_private_and_so_is_the_command(bot: Bot) -> None:
    status, body = await bot.command("/help")
    assert status == 200 and json.loads(body).get("response_type") != "in_channel"
    assert "/imagine" in await private_reply(bot, 1)
    await bot.command("/usage")
    assert "you: 0 requests" in await private_reply(bot, 2)
    assert bot.slack.messages == []  # nothing in the channel
    assert [e.via for e in bot.slack.ephemeral] == ["response_url", "response_url"]
    assert all(r["response_type"] == "ephemeral" for r in bot.slack.responses)


async def test_refusals_of_slash_commands_are_private(bot: Bot) -> None:
    await bot.command("/model", "openai/gpt-4o", user_id=ALICE)
    assert "Only admins" in await private_reply(bot, 1)
    status, body = await bot.command("/frobnicate")
    assert json.loads(body).get("response_type") != "in_channel"
    assert "Unknown command /frobnicate" in await private_reply(bot, 2)
    await bot.command("/ask")
    assert "Ask me something" in await private_reply(bot, 3)
    assert bot.slack.messages == []


async def test_a_refused_mention_is_told_privately_in_its_thread(bot: Bot) -> None:
    mention = bot.slack.message_event("/model openai/gpt-4o", mention=True)
    await bot.event(mention)
    assert "Only admins" in await private_reply(bot, 1)
    [ephemeral] = bot.slack.ephemeral
    assert (ephemeral.via, ephemeral.channel, ephemeral.thread_ts) == (
        "api",
        CHANNEL,
        mention["ts"],
    )
    assert bot.slack.messages == []


async def test_errors_of_slash_commands_are_private_answers_public(
    bot: Bot, fake: FakeTokModel
) -> None:
    # TokModel's failure reaches the core (the handler doesn't explain it itself).
    fake.fail(Fault(status=403, path="/v1beta/models"))
    await bot.command("/model", "openai/gpt-4o", user_id=ADA, user_name="ada")
    assert "out of credits" in await private_reply(bot, 1, user=ADA)
    # Nothing in a channel (admins may get an alert in their DMs, D…).
    assert [m for m in bot.slack.messages if not m.channel.startswith("D")] == []
    await bot.command("/ask", "public question")
    [answer] = await bot.replies(1)
    assert "public question" in answer and len(bot.slack.ephemeral) == 1


async def test_a_spent_response_url_falls_back_to_an_ephemeral_message(bot: Bot) -> None:
    payload = bot.slack.command_payload("/help")
    payload["response_url"] = f"{bot.slack.url}/commands/{bot.slack.team_id}/999999"
    await bot.slack.post_command(bot.url, payload)
    assert "/imagine" in await private_reply(bot, 1)
    assert [e.via for e in bot.slack.ephemeral] == ["api"]
    assert bot.slack.messages == []

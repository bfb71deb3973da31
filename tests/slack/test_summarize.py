"""/summarize on Slack: the slash command in a channel; in a thread (slash commands cannot be
used in threads, per Slack's docs) as a mention, reading a thread not stored yet first."""

from __future__ import annotations

from bot.tokmodel.fake import FakeTokModel
from tests.slack.conftest import BOB, Bot


async def test_summarize_the_channel_and_an_unstored_thread(bot: Bot, fake: FakeTokModel) -> None:
    await bot.command("/ask", "The launch is on Thursday at 09:30.")
    await bot.replies(1)
    status, _ = await bot.command("/summarize", "24h")
    assert status == 200
    summary = (await bot.replies(2))[-1]
    assert "Summary of this channel over the last 24h" in summary
    assert "Thursday at 09:30" in summary

    parent = bot.slack.message_event("staging broke after deploy 7.2")
    await bot.event(parent)
    await bot.event(bot.slack.message_event("the rollback is owned by Carol", user=BOB,
                                            thread_ts=parent["ts"]))  # fmt: skip
    mention = bot.slack.message_event("/summarize thread", mention=True, thread_ts=parent["ts"])
    await bot.event(mention)
    [thread_summary] = await bot.replies(1, thread_ts=parent["ts"])
    assert "Summary of this thread" in thread_summary and "(2 messages)" in thread_summary
    assert "deploy 7.2" in thread_summary and "owned by Carol" in thread_summary
    assert len(bot.slack.calls_to("conversations.replies")) == 1

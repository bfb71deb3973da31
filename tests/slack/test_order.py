"""A conversation's place in line is taken when its event is acknowledged, before any Slack
call: a slow `users.info` for one person never lets a later message overtake theirs."""

from __future__ import annotations

from tests.slack.conftest import ALICE, BOB, CHANNEL, Bot


async def test_a_slow_author_lookup_does_not_let_a_later_mention_overtake(bot: Bot) -> None:
    first = bot.slack.message_event("hello", mention=True, user=BOB)
    thread = str(first["ts"])
    await bot.event(first)
    await bot.replies(1, thread_ts=thread)  # Bob is looked up now (and cached)
    bot.slack.delay("users.info", 0.5)  # Alice is not: her look-up takes a while
    alice = bot.slack.message_event("first", mention=True, user=ALICE, thread_ts=thread)
    bob = bot.slack.message_event("second", mention=True, user=BOB, thread_ts=thread)
    assert (await bot.event(alice))[0] == 200
    assert (await bot.event(bob))[0] == 200
    texts = await bot.replies(3, CHANNEL, thread_ts=thread)
    assert "«Alice: first»" in texts[1] and "«Bob: second»" in texts[2], texts

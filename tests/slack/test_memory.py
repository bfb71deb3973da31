"""Team memory on Slack: the real slack-bolt app observes channel messages (edits, deletions)
from the fake Slack, and /recall and mentions find them with their links."""

from __future__ import annotations

from adapters.slack.fake import FakeSlack
from tests.slack.conftest import ADA, BOB, CHANNEL, Bot

FACT = "Decision: the deploy window is Tuesday 14:00 UTC, never Fridays."
FILLER = 200


async def settled(bot: Bot, slack: FakeSlack) -> None:
    await slack.wait_for(lambda: bot.adapter.bot.busy == 0)


async def test_channel_messages_are_remembered_recalled_with_links_and_forgotten(
    bot: Bot,
) -> None:
    slack = bot.slack
    await bot.event(slack.message_event("said before memory was on", user=BOB))
    # Observing runs after the ack: looked at only once /memory on was handled, this message
    # would be kept (the process's first database read, while /memory on writes).
    await settled(bot, slack)
    await bot.command("/memory", "on", user_id=ADA, user_name="ada")
    assert "Team memory is on here" in (await bot.replies(1))[-1]

    fact = slack.message_event(FACT, user=BOB)
    await bot.event(fact)
    secret = slack.message_event("the launch codeword is pineapple", user=BOB)
    await bot.event(secret)
    typo = slack.message_event("rollback plan: none yet", user=BOB)
    await bot.event(typo)
    for n in range(FILLER):
        await bot.event(slack.message_event(f"filler {n}: lunch and coffee", user=BOB))
    await bot.event(slack.message_changed_event(typo, "rollback plan: revert the tag"))
    await bot.event(slack.message_deleted_event(secret))
    await settled(bot, slack)

    await bot.command("/memory")
    assert f"{FILLER + 2} message(s) of this channel remembered" in (await bot.replies(2))[-1]
    link = f"https://fake.slack.com/archives/{CHANNEL}/p{fact['ts'].replace('.', '')}"
    await bot.command("/recall", "deploy window")
    recalled = (await bot.replies(3))[-1]
    assert "Bob, " in recalled and "deploy window is Tuesday" in recalled and link in recalled
    await bot.command("/recall", "rollback pineapple")
    recalled = (await bot.replies(4))[-1]
    assert "revert the tag" in recalled and "pineapple" not in recalled.split("»", 1)[1]

    mention = slack.message_event("when is our deploy window?", mention=True)
    await bot.event(mention)
    [answer] = await bot.replies(1, thread_ts=mention["ts"])
    assert "_Sources: Bob, " in answer and link in answer

    await bot.command("/memory", "off", user_id=ADA, user_name="ada")
    await bot.replies(5)
    await bot.event(slack.message_event("said after memory was off", user=BOB))
    await settled(bot, slack)
    await bot.command("/memory", "forget", user_id=ADA, user_name="ada")
    assert f"Forgot {FILLER + 2:,} remembered" in (await bot.replies(6))[-1]

"""A conversation's place in line is taken when its event is acknowledged, before any Slack
call: a slow `users.info` for one person never lets a later message overtake theirs."""

from __future__ import annotations

from bot.core import QUEUED_NOTICE
from bot.tokmodel.fake import FakeTokModel
from tests.slack.conftest import ALICE, BOB, CHANNEL, Bot

QUEUED = QUEUED_NOTICE[:20]


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


STORY = "word " * 120  # streamed 4 characters at a time, 0.03 s apart: ~4.5 s


def shown(bot: Bot) -> list[str]:
    """Everything the channel's people could see, public or private."""
    slack = bot.slack
    private = [str(r.get("text", "")) for r in slack.responses] + [
        str(c.args.get("text", "")) for c in slack.calls_to("chat.postEphemeral")
    ]
    return slack.texts(CHANNEL) + private


async def test_a_long_answer_holds_up_only_what_reads_the_history(
    bot: Bot, fake: FakeTokModel
) -> None:
    fake.chunk_delay, fake.chunk_chars = 0.03, 4
    fake.set_reply(STORY)
    await bot.command("/ask", "tell me a long story")
    await bot.slack.wait_for(lambda: any("word" in t for t in bot.slack.texts(CHANNEL)))
    fake.set_reply(None)  # the next question gets the stand-in's usual answer

    def story_done() -> bool:
        return any(t.strip() == STORY.strip() for t in bot.slack.texts(CHANNEL))

    # /help reads no history: answered while the story streams.
    await bot.command("/help")
    await bot.slack.wait_for(lambda: any("/usage" in t for t in shown(bot)))
    assert not story_done()
    # A question keeps its turn: told at once, answered after the story, having seen all of it.
    await bot.command("/ask", "and then?")
    await bot.slack.wait_for(lambda: any(t.startswith(QUEUED) for t in bot.slack.texts(CHANNEL)))
    assert not story_done()
    try:
        await bot.slack.wait_for(
            lambda: story_done() and any(": and then?»" in t for t in bot.slack.texts(CHANNEL))
        )
    except TimeoutError:
        raise AssertionError([t[:80] for t in bot.slack.texts(CHANNEL)]) from None
    await bot.replies(0)  # nothing still streaming
    public = bot.slack.texts(CHANNEL)
    assert not any(t.startswith(QUEUED) for t in public)  # the answer replaced the notice
    assert sum(": and then?»" in t for t in public) == 1
    follow_up = [r.json or {} for r in fake.requests if r.path.endswith("/chat/completions")][-1]
    story = [m for m in follow_up["messages"] if m.get("role") == "assistant"]
    assert [m["content"].strip() for m in story] == [STORY.strip()]

"""Pictures (and a log file beside them) in a Slack mention, through the real slack-bolt app:
downloaded with the bot token (the fake Slack serves files only with it, as Slack does), sent to
TokModel as content parts, carried by follow-ups in the thread, and refused one line each when
they can't be looked at."""

from __future__ import annotations

from bot.tokmodel.fake import FakeTokModel
from bot.tokmodel.fake_vision import images_in, solid_png
from tests.slack.conftest import Bot

CHAT = "/v1/chat/completions"


def chats(fake: FakeTokModel) -> list[dict[str, object]]:
    return [r.json for r in fake.requests if r.path == CHAT and r.json]


async def test_a_mention_with_pictures_is_answered_from_them_and_so_are_follow_ups(
    bot: Bot, fake: FakeTokModel
) -> None:
    red, blue = solid_png(40, 30, (220, 30, 30)), solid_png(20, 20, (30, 60, 220))
    files = [
        bot.slack.add_file("red.png", red, "image/png"),
        bot.slack.add_file("blue.jpg.png", blue, "image/png"),
        bot.slack.add_file("boot.log", b"12:00 start\n12:01 ERROR E42 disk full\n", "text/plain"),
    ]
    event = bot.slack.message_event("what colours?", mention=True, files=files)
    await bot.event(event)
    [answer] = await bot.replies(1, thread_ts=event["ts"])
    asked = chats(fake)[-1]
    assert images_in(asked) == [red, blue]  # the very bytes, in order
    assert "📎 boot.log (2 lines)" in str(asked) and "ERROR E42 disk full" in str(asked)
    assert "a 40×30 PNG, mostly red; a 20×20 PNG, mostly blue" in answer
    assert [c.authorized for c in bot.slack.calls_to("download")] == [True, True, True]
    follow_up = bot.slack.message_event("which was first?", mention=True, thread_ts=event["ts"])
    await bot.event(follow_up)
    await bot.replies(2, thread_ts=event["ts"])
    assert images_in(chats(fake)[-1]) == [red, blue]
    assert len(bot.slack.calls_to("download")) == 3  # from the cache, not downloaded again


async def test_pictures_that_cant_be_looked_at_get_one_line_each(
    bot: Bot, fake: FakeTokModel
) -> None:
    green = solid_png(4, 4, (30, 170, 50))
    files = [
        bot.slack.add_file("huge.png", b"\x89PNG\r\n\x1a\n" + bytes(40 * 1024 * 1024), "image/png"),
        bot.slack.add_file("login.png", b"<!DOCTYPE html><html>Sign in</html>", "image/png"),
        *(bot.slack.add_file(f"g{i}.png", green, "image/png") for i in range(4)),
    ]
    event = bot.slack.message_event("look", mention=True, files=files)
    await bot.event(event)
    answer, note = await bot.replies(2, thread_ts=event["ts"])
    assert images_in(chats(fake)[-1]) == [green, green]
    assert "I see 2 picture(s)" in answer
    lines = note.splitlines()
    assert len(lines) == 3
    assert "huge.png is over the 8 MB limit" in lines[0]
    assert "login.png isn't a PNG, JPEG, WebP or GIF picture (it is a web page)" in lines[1]
    assert "so I skipped g2.png, g3.png" in lines[2]
    # The 40 MB file was never downloaded: Slack said its size.
    assert len(bot.slack.calls_to("download")) == 3

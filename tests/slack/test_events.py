"""Mentions, DMs and voice clips over the Events API: answered in threads, once per event."""

from __future__ import annotations

import asyncio
import io
import logging
import wave
from collections.abc import Callable

import pytest
from sqlalchemy import text

from adapters.slack.fake import FakeSlack
from bot.logs import request_id
from bot.settings import Settings
from bot.tokmodel.fake import FakeTokModel
from bot.tokmodel.fake_media import is_png, png_image
from tests.slack.conftest import Bot, running

DM = "D0ALICE"


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(8000)
        clip.writeframes(b"\x00\x10" * 4000)
    return buffer.getvalue()


async def test_a_mention_is_answered_in_its_thread_and_the_thread_continues(bot: Bot) -> None:
    first = bot.slack.message_event("remember the number 42", mention=True)
    status, _ = await bot.event(first)
    assert status == 200
    [answer] = await bot.replies(1, thread_ts=first["ts"])
    assert "You said: «Alice: remember the number 42»" in answer  # the mention is stripped
    follow_up = bot.slack.message_event("which number?", mention=True, thread_ts=first["ts"])
    await bot.event(follow_up)
    second = (await bot.replies(2, thread_ts=first["ts"]))[-1]
    assert "I can see 2 earlier message(s)" in second and "remember the number 42" in second
    # A new mention in the channel starts a new conversation (its own thread).
    fresh = bot.slack.message_event("hello again", mention=True)
    await bot.event(fresh)
    [third] = await bot.replies(1, thread_ts=fresh["ts"])
    assert "I can see 0 earlier message(s)" in third


async def test_a_mention_and_its_message_event_are_answered_once(
    bot: Bot, fake: FakeTokModel
) -> None:
    """Slack sends a `message` event beside every app_mention (same ts and text); the bot
    acknowledges it before bolt and stores nothing for it, in whichever order the two come."""
    for companion_first in (True, False):
        mention = bot.slack.message_event("deploy?", mention=True)
        companion = {**mention, "type": "message", "channel_type": "channel"}
        events = [companion, mention] if companion_first else [mention, companion]
        for event in events:
            assert (await bot.event(event))[0] == 200
        await bot.replies(1, thread_ts=mention["ts"])
    assert len(bot.slack.texts()) == 2
    # Alone, it starts nothing (bolt's listeners, too, run before the response: nothing later).
    alone = bot.slack.message_event("only the message event", mention=True)
    assert (await bot.event({**alone, "type": "message", "channel_type": "channel"}))[0] == 200
    assert bot.adapter.bot.busy == 0
    assert len([r for r in fake.requests if r.path == "/v1/chat/completions"]) == 2


async def test_channel_chatter_without_a_mention_is_ignored(bot: Bot) -> None:
    await bot.event(bot.slack.message_event("just people talking"))
    await asyncio.sleep(0.2)
    assert bot.adapter.bot.busy == 0 and bot.slack.messages == []


async def test_direct_messages_are_answered_in_a_thread(bot: Bot) -> None:
    dm = bot.slack.message_event("hi in private", channel=DM, channel_type="im")
    await bot.event(dm)
    [answer] = await bot.replies(1, channel=DM, thread_ts=dm["ts"])
    assert "hi in private" in answer
    reply = bot.slack.message_event("and again", channel=DM, channel_type="im", thread_ts=dm["ts"])
    await bot.event(reply)
    second = (await bot.replies(2, channel=DM, thread_ts=dm["ts"]))[-1]
    assert "I can see 2 earlier message(s)" in second


async def test_bot_messages_are_ignored_ours_included(bot: Bot) -> None:
    ours = bot.slack.message_event("echo", channel=DM, channel_type="im")
    ours |= {"bot_id": bot.slack.bot_id, "user": bot.slack.bot_user_id}
    other = bot.slack.message_event("another bot", channel=DM, channel_type="im")
    other |= {"bot_id": "B0OTHER", "subtype": "bot_message"}
    mention = bot.slack.message_event("bot mentions bot", mention=True) | {"bot_id": "B0OTHER"}
    for event in (ours, other, mention):
        assert (await bot.event(event))[0] == 200
    await asyncio.sleep(0.2)
    assert bot.slack.messages == []


async def test_three_deliveries_of_one_event_give_one_reply(bot: Bot, fake: FakeTokModel) -> None:
    body = bot.slack.event_body(bot.slack.message_event("only once", mention=True))
    statuses = await asyncio.gather(
        bot.slack.post_event(bot.url, body),
        bot.slack.post_event(bot.url, body, retry_num=1),
        bot.slack.post_event(bot.url, body, retry_num=2),
    )
    assert [status for status, _ in statuses] == [200, 200, 200]
    await bot.replies(1)
    await asyncio.sleep(0.3)
    assert len(bot.slack.messages) == 1
    assert len([r for r in fake.requests if r.path == "/v1/chat/completions"]) == 1


async def test_a_voice_clip_becomes_a_transcript_turn(bot: Bot, fake: FakeTokModel) -> None:
    clip = bot.slack.add_file(
        "audio_message.webm", wav_bytes(), "audio/webm", subtype="slack_audio"
    )
    event = bot.slack.message_event("", files=[clip])
    await bot.event(event)
    [reply] = await bot.replies(1, thread_ts=event["ts"])
    assert reply.startswith("🎙️ Alice: (stand-in transcript of audio_message.webm")
    assert [c.authorized for c in bot.slack.calls_to("download")] == [True]
    # The transcript is a turn of the thread: a mention there sees it.
    await bot.event(bot.slack.message_event("summarise", mention=True, thread_ts=event["ts"]))
    await bot.replies(2, thread_ts=event["ts"])
    last_chat = [r for r in fake.requests if r.path == "/v1/chat/completions"][-1]
    assert last_chat.json is not None
    assert any("stand-in transcript" in m["content"] for m in last_chat.json["messages"])


async def test_audio_uploads_are_checked(bot: Bot) -> None:
    not_audio = bot.slack.add_file("notes.mp3", b"just some text, not sound", "audio/mpeg")
    event = bot.slack.message_event("", files=[not_audio])
    await bot.event(event)
    [reply] = await bot.private_replies(1)  # a refusal: only the sender sees it
    assert "doesn't contain audio" in reply
    assert bot.slack.ephemeral[0].thread_ts == event["ts"]
    images = bot.slack.add_file("photo.png", b"\x89PNG\r\n\x1a\n", "image/png")
    await bot.event(bot.slack.message_event("", files=[images]))
    await asyncio.sleep(0.2)
    assert bot.slack.messages == [] and len(bot.slack.ephemeral) == 1  # nobody's business


async def test_a_login_page_is_not_audio(bot: Bot) -> None:
    clip = bot.slack.add_file("memo.m4a", wav_bytes(), "audio/mp4")
    clip["url_private_download"] = clip["url_private_download"].replace(clip["id"], "F0GONE")
    event = bot.slack.message_event("", files=[clip])
    await bot.event(event)
    [reply] = await bot.private_replies(1)
    assert "wouldn't let me download memo.m4a" in reply


async def test_oversize_audio_is_refused_while_downloading(
    slack_settings: Callable[..., Settings], slack: FakeSlack, fake: FakeTokModel
) -> None:
    settings = slack_settings(TOKBOT_MAX_AUDIO_BYTES="100000")
    async with running(settings, slack, fake) as bot:
        big = bot.slack.add_file("long.wav", wav_bytes() * 40, "audio/wav")
        big["size"] = 10  # lie about the size: the cap holds while reading
        event = bot.slack.message_event("", files=[big])
        await bot.event(event)
        [reply] = await bot.private_replies(1)
    assert "too large" in reply


async def test_the_token_never_goes_to_a_foreign_host(bot: Bot) -> None:
    clip = bot.slack.add_file("memo.wav", wav_bytes(), "audio/wav")
    clip["url_private_download"] = "https://evil.example/steal.wav"
    event = bot.slack.message_event("", files=[clip])
    await bot.event(event)
    [reply] = await bot.private_replies(1)
    assert "can't fetch memo.wav" in reply


async def test_voice_clips_follow_the_channel_setting(bot: Bot) -> None:
    await bot.command("/transcription", "translate", user_id="U0ADA")
    await bot.replies(1)
    clip = bot.slack.add_file("memo.m4a", wav_bytes(), "audio/mp4", subtype="slack_audio")
    event = bot.slack.message_event("", files=[clip])
    await bot.event(event)
    [reply] = await bot.replies(1, thread_ts=event["ts"])
    assert reply.startswith("🎙️ (translated) Alice: (stand-in English translation of memo.m4a")
    await bot.command("/transcription", "off", user_id="U0ADA")
    await bot.replies(2)
    await bot.event(bot.slack.message_event("", files=[clip]))
    await asyncio.sleep(0.3)
    assert len(bot.slack.messages) == 3  # no transcript when it's off


async def test_a_voice_clip_in_a_dm_is_transcribed_in_its_thread(bot: Bot) -> None:
    clip = bot.slack.add_file("dm.webm", wav_bytes(), "audio/webm", subtype="slack_audio")
    event = bot.slack.message_event("", files=[clip], channel=DM, channel_type="im")
    await bot.event(event)
    [reply] = await bot.replies(1, channel=DM, thread_ts=event["ts"])
    assert "(stand-in transcript of dm.webm" in reply


async def test_a_mention_with_an_image_and_imagine_edits_it_in_the_thread(
    bot: Bot, fake: FakeTokModel
) -> None:
    picture = bot.slack.add_file("dot.png", png_image(64, 64, "dot"), "image/png")
    event = bot.slack.message_event("imagine make it blue", mention=True, files=[picture])
    await bot.event(event)
    await bot.slack.wait_for(lambda: len(bot.slack.uploads) == 1 and bot.adapter.bot.busy == 0)
    (upload,) = bot.slack.uploads
    assert is_png(upload.data) and upload.thread_ts == event["ts"]
    edit = next(r for r in fake.requests if r.path == "/v1/images/edits")
    assert edit.form.get("prompt") == "make it blue"
    assert [c.authorized for c in bot.slack.calls_to("download")] == [True]
    assert bot.slack.texts(thread_ts=event["ts"]) == ["🎨 make it blue"]


async def test_a_mention_sharing_a_file_is_answered_once_whichever_events_arrive(
    bot: Bot, fake: FakeTokModel
) -> None:
    """Slack may send such a message only as `message` (file_share), or as that and an
    app_mention, each possibly retried: one answer."""
    picture = bot.slack.add_file("dot.png", png_image(64, 64, "dot"), "image/png")
    as_mention = bot.slack.message_event("/imagine", mention=True, files=[picture])
    as_message = {
        **as_mention,
        "type": "message",
        "subtype": "file_share",
        "channel_type": "channel",
    }
    await bot.event(as_message)
    await bot.event(as_mention)
    await bot.event(as_message, retry_num=1)
    await bot.slack.wait_for(lambda: len(bot.slack.uploads) == 1 and bot.adapter.bot.busy == 0)
    await asyncio.sleep(0.2)
    assert len(bot.slack.uploads) == 1
    assert [r.path for r in fake.requests].count("/v1/images/variations") == 1


async def test_called_into_a_thread_the_bot_reads_what_was_said_before(
    bot: Bot, fake: FakeTokModel
) -> None:
    """People talk in a thread without the bot; a mention there gets an answer that knows the
    thread (conversations.replies, once: later mentions use the stored history)."""
    parent = bot.slack.message_event("deploy failed on staging: error 42")
    await bot.event(parent)
    await bot.event(bot.slack.message_event("smells like the migration", user="U0BOB",
                                            thread_ts=parent["ts"]))  # fmt: skip
    mention = bot.slack.message_event("what do you think?", mention=True, thread_ts=parent["ts"])
    await bot.event(mention)
    [answer] = await bot.replies(1, thread_ts=parent["ts"])
    assert "I can see 2 earlier message(s)" in answer
    asked = [r for r in fake.requests if r.path == "/v1/chat/completions"][-1].json
    assert asked is not None
    said = [m["content"] for m in asked["messages"] if m["role"] == "user"]
    assert said == [
        "Alice: deploy failed on staging: error 42",
        "Bob: smells like the migration",
        "Alice: what do you think?",
    ]
    (replies_call,) = bot.slack.calls_to("conversations.replies")
    assert replies_call.args["ts"] == parent["ts"] and replies_call.args["latest"] == mention["ts"]
    again = bot.slack.message_event("and the fix?", mention=True, thread_ts=parent["ts"])
    await bot.event(again)
    second = (await bot.replies(2, thread_ts=parent["ts"]))[-1]
    assert "I can see 4 earlier message(s)" in second  # two adopted, the first exchange
    assert len(bot.slack.calls_to("conversations.replies")) == 1


async def test_an_unreadable_thread_does_not_stop_the_answer(bot: Bot) -> None:
    mention = bot.slack.message_event("hello?", mention=True, thread_ts="1600000000.000001")
    await bot.event(mention)  # Slack knows no such thread: thread_not_found
    [answer] = await bot.replies(1, thread_ts="1600000000.000001")
    assert "I can see 0 earlier message(s)" in answer
    assert len(bot.slack.calls_to("conversations.replies")) == 1


async def test_the_adapters_log_lines_carry_the_same_request_id_as_the_cores(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """A users.info failure (logged by the adapter before the core runs) and TokModel's request
    (logged by the core's client) name one request id, so one message's lines can be found."""
    seen: list[tuple[str, str]] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.name, request_id.get()))

    grab = Grab(logging.DEBUG)
    logging.getLogger().addHandler(grab)
    caplog.set_level(logging.DEBUG)
    try:
        event = bot.slack.message_event("hi", mention=True, user="U0NOBODY")  # unknown user
        await bot.event(event)
        await bot.replies(1, thread_ts=event["ts"])
    finally:
        logging.getLogger().removeHandler(grab)
    adapter_ids = {rid for name, rid in seen if name == "adapters.slack.users"}
    core_ids = {rid for name, rid in seen if name.startswith("tokbot.tokmodel")}
    assert len(adapter_ids) == 1 and "-" not in adapter_ids
    assert core_ids == adapter_ids


async def test_a_mention_that_cannot_be_stored_is_not_acknowledged(bot: Bot) -> None:
    """The adapter stores an app_mention itself, before bolt: when the database refuses the
    INSERT, Slack gets an error (and retries), never a 200 for an event nobody kept."""
    mention = bot.slack.message_event("keep me", mention=True)
    async with bot.core.store.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE inbox RENAME TO inbox_away"))
    try:
        status, _ = await bot.event(mention)
    finally:
        async with bot.core.store.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE inbox_away RENAME TO inbox"))
    assert status == 500
    assert (await bot.event(mention, retry_num=1))[0] == 200  # Slack's retry
    [answer] = await bot.replies(1, thread_ts=mention["ts"])
    assert "keep me" in answer

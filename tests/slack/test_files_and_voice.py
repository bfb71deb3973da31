"""Files read into a question, and voice clips answered as questions, over the Events API with the
real slack-bolt against the fake Slack (which serves shared files only with the bot token)."""

from __future__ import annotations

from bot.domain import ConversationKey, TurnKind, TurnRole
from bot.files import READABLE
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.slack.conftest import ADA, CHANNEL, Bot
from tests.slack.test_events import wav_bytes

CHAT = "/v1/chat/completions"


def last_question(fake: FakeTokModel) -> str:
    asked = [r.json for r in fake.requests if r.path == CHAT and r.json][-1]
    return str(asked["messages"][-1]["content"])


async def test_a_mention_with_a_log_file_and_a_snippet_reaches_tokmodel_with_their_text(
    bot: Bot, fake: FakeTokModel
) -> None:
    log_text = "2026-11-30 12:00:01 deploy ERROR: migration 0005 timed out\n" * 3
    log = bot.slack.add_file("deploy.log", log_text.encode(), "text/plain")
    # A snippet pasted in Slack's composer: mode "snippet", text/plain, often without an
    # extension (the file object: docs.slack.dev/reference/objects/file-object).
    snippet = bot.slack.add_file("Untitled", b"SELECT count(*) FROM turns;", "text/plain")
    snippet |= {"mode": "snippet", "filetype": "sql"}
    core = bot.slack.add_file("core", b"\x7fELF\x02\x01\x01\x00" * 64, "application/octet-stream")
    event = bot.slack.message_event(
        "why did the deploy fail?", mention=True, files=[log, snippet, core]
    )
    await bot.event(event)
    answer, note = await bot.replies(2, thread_ts=event["ts"])
    question = last_question(fake)
    assert question.startswith("Alice: why did the deploy fail?\n\n📎 deploy.log (3 lines):\n```\n")
    assert log_text in question and "📎 Untitled (1 line):\n```\nSELECT count(*)" in question
    assert "Files I saw: deploy.log, Untitled." in answer
    # The unknown binary: one line, after the answer; nothing else is lost.
    assert note == f"📎 I didn't read core: it isn't text ({READABLE})."
    assert [c.authorized for c in bot.slack.calls_to("download")] == [True, True, True]


async def test_an_unknown_binary_alone_gets_its_one_line_privately(
    bot: Bot, fake: FakeTokModel
) -> None:
    blob = bot.slack.add_file("dump.dat", bytes(range(256)) * 8, "application/octet-stream")
    await bot.event(bot.slack.message_event("", mention=True, files=[blob]))
    [refusal] = await bot.private_replies(1)
    assert refusal.startswith("📎 I didn't read dump.dat: it isn't text")
    assert bot.slack.messages == [] and not [r for r in fake.requests if r.path == CHAT]


async def test_a_voice_clip_in_an_answer_channel_gets_its_transcript_and_an_answer(
    bot: Bot, fake: FakeTokModel
) -> None:
    await bot.command("/transcription", "answer", user_id=ADA)
    assert "answered as a question" in (await bot.replies(1))[0]
    clip = bot.slack.add_file(
        "audio_message.webm", wav_bytes(), "audio/webm", subtype="slack_audio"
    )
    event = bot.slack.message_event("", files=[clip])
    await bot.event(event)
    transcript, answer = await bot.replies(2, thread_ts=event["ts"])
    assert transcript.startswith("🎙️ Alice: (stand-in transcript of audio_message.webm")
    assert "You said: «Alice (voice message): (stand-in transcript of audio_message" in answer
    assert bot.slack.uploads == []  # answer mode: no audio
    key = ConversationKey("slack", bot.slack.team_id, CHANNEL, event["ts"])
    history = await bot.core.store.history(key)
    assert [(t.role, t.kind) for t in history] == [
        (TurnRole.USER, TurnKind.TRANSCRIPT),
        (TurnRole.ASSISTANT, TurnKind.TEXT),
    ]
    assert history[1].content in answer  # (Slack shows it as mrkdwn)


async def test_a_voice_clip_in_a_speak_channel_also_gets_the_answer_as_audio(
    bot: Bot, fake: FakeTokModel
) -> None:
    await bot.command("/transcription", "speak", user_id=ADA)
    await bot.replies(1)
    clip = bot.slack.add_file("memo.m4a", wav_bytes(), "audio/mp4", subtype="slack_audio")
    event = bot.slack.message_event("", files=[clip])
    await bot.event(event)
    await bot.slack.wait_for(lambda: len(bot.slack.uploads) == 1 and bot.adapter.bot.busy == 0)
    transcript, answer = bot.slack.texts(thread_ts=event["ts"])
    assert "(stand-in transcript of memo.m4a" in transcript and "You said:" in answer
    (audio,) = bot.slack.uploads
    assert audio.thread_ts == event["ts"] and audio.filename == "tokbot-answer.mp3"
    spoken = next(r for r in fake.requests if r.path == "/v1/audio/speech").json
    assert spoken is not None and spoken["input"].startswith("(stand-in) You said:")
    # Speech that fails is one line; the answer in text stands.
    fake.fail(Fault(status=429, retry_after=30, times=-1, path="/v1/audio/speech"))
    second = bot.slack.message_event("", files=[clip])
    await bot.event(second)
    *_, failed = await bot.replies(3, thread_ts=second["ts"])
    assert failed.startswith("🔊 No audio this time:") and len(bot.slack.uploads) == 1


PAGE = b"<!DOCTYPE html><html><body><h1>Release notes</h1><p>v2.3 fixes E42.</p></body></html>"


async def test_a_shared_html_file_is_read_and_a_sign_in_page_is_not(
    bot: Bot, fake: FakeTokModel
) -> None:
    """HTML is what a shared .html file is and what Slack's sign-in page is: the file object's
    mimetype and size, and the redirect to the sign-in page, tell them apart."""
    page = bot.slack.add_file("notes.html", PAGE, "text/html")
    event = bot.slack.message_event("what does v2.3 fix?", mention=True, files=[page])
    await bot.event(event)
    await bot.replies(1, thread_ts=event["ts"])
    assert "📎 notes.html (1 line):\n```\n<!DOCTYPE html><html><body><h1>Release" in (
        last_question(fake)
    )

    def refusals() -> list[str]:
        said = bot.slack.texts()  # a note after the answer to the rest of the question
        return [t for t in said if "Slack wouldn't let me download gone.html" in t]

    for redirects in (True, False):  # Slack redirects to its sign-in page, or serves it at once
        bot.slack.login_redirects = redirects
        gone = bot.slack.add_file("gone.html", PAGE, "text/html")
        gone["url_private_download"] = gone["url_private_download"].replace(gone["id"], "F0GONE")
        await bot.event(bot.slack.message_event("and this?", mention=True, files=[gone]))
        await bot.slack.wait_for(lambda n=1 + (not redirects): len(refusals()) == n)
    assert "Sign in" not in last_question(fake)  # the sign-in page was never read as the file

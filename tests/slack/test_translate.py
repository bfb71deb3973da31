"""Slack payloads to domain types, and escaping of what the bot says (stored payload shapes)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.slack import translate
from bot.domain import Author, ConversationKey

ALICE = Author("U0ALICE", "Alice")

VOICE_CLIP_EVENT = {
    "type": "message",
    "subtype": "file_share",
    "text": "",
    "user": "U0ALICE",
    "ts": "1732760000.000200",
    "channel": "C0GENERAL",
    "channel_type": "channel",
    "files": [
        {
            "id": "F0CLIP",
            "name": "audio_message.m4a",
            "title": "audio_message.m4a",
            "mimetype": "audio/mp4",
            "filetype": "m4a",
            "subtype": "slack_audio",
            "size": 48213,
            "url_private": "https://files.slack.com/files-pri/T0-F0CLIP/audio_message.m4a",
            "url_private_download": (
                "https://files.slack.com/files-pri/T0-F0CLIP/download/audio_message.m4a"
            ),
        },
        {"id": "F0PIC", "name": "pic.png", "mimetype": "image/png", "size": 10},
    ],
}


@given(st.text())
def test_escaped_text_has_no_control_characters_and_round_trips(text: str) -> None:
    escaped = translate.escape(text)
    assert "<" not in escaped and ">" not in escaped
    assert translate.unescape(escaped) == text


def test_the_bot_mention_is_removed_and_others_kept() -> None:
    text = "<@U0BOT> ask <@U0BOB|bob> about &lt;html&gt; &amp; <@U0BOT|tokbot>"
    stripped = translate.strip_mention(text, "U0BOT")
    assert translate.unescape(stripped) == "ask <@U0BOB|bob> about <html> &"


def test_a_mention_in_a_thread_continues_the_thread() -> None:
    event = {"type": "app_mention", "user": "U0ALICE", "text": "<@U0BOT> and?", "ts": "2.0"}
    event |= {"channel": "C1", "thread_ts": "1.0"}
    incoming = translate.from_message(
        event, team_id="T1", author=ALICE, bot_user_id="U0BOT", event_id="Ev1"
    )
    assert incoming.key == ConversationKey("slack", "T1", "C1", "1.0")
    assert (incoming.command, incoming.text, incoming.event_id) == ("ask", "and?", "Ev1")
    assert incoming.message_id == "2.0"


def test_a_voice_clip_becomes_an_audio_attachment() -> None:
    [clip] = translate.audio_attachments(VOICE_CLIP_EVENT["files"])  # type: ignore[arg-type]
    assert clip.is_voice and clip.content_type == "audio/mp4" and clip.size == 48213
    assert clip.url is not None and clip.url.endswith("/download/audio_message.m4a")
    incoming = translate.from_message(
        VOICE_CLIP_EVENT,
        team_id="T1",
        author=ALICE,
        bot_user_id="U0BOT",
        event_id="Ev2",
        command="voice",
        attachments=(clip,),
    )
    assert incoming.key.thread == "1732760000.000200"  # the reply starts a thread


def test_slash_commands_answer_in_the_channel() -> None:
    payload = {"command": "/Ask", "text": "a &amp; b", "team_id": "T1", "channel_id": "C1"}
    incoming = translate.from_command(payload | {"trigger_id": "t1"}, ALICE)
    assert incoming.key == ConversationKey("slack", "T1", "C1", "")
    assert (incoming.command, incoming.text, incoming.event_id) == ("ask", "a & b", "command:t1")


def test_markdown_bold_becomes_slack_bold() -> None:
    assert translate.to_slack("**tokbot** — a **b** c ** d **") == "*tokbot* — a *b* c ** d **"
    assert translate.to_slack("**<!here>**") == "*&lt;!here&gt;*"

"""Files read into a question, and voice messages answered as questions (`/transcription answer`
and `speak`), through the real discord.py against the fake Discord (which serves attachments)."""

from __future__ import annotations

from adapters.discord import DiscordAdapter
from adapters.discord.fake import FakeDiscord
from bot.domain import ConversationKey, TurnKind, TurnRole
from bot.tokmodel import fake_media
from bot.tokmodel.fake import FakeTokModel
from tests.discord.helpers import answer, reply

MANAGE_GUILD = 1 << 5
BOT = "<@900000000000000001>"
CHAT = "/v1/chat/completions"


async def test_a_mention_with_a_log_file_reaches_tokmodel_with_its_text(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    log_text = "worker-3 OOMKilled after 512Mi\nrestarting\n"
    log = discord_fake.attachment("pod.log", log_text.encode(), "text/plain; charset=utf-8")
    msg = await discord_fake.message(f"{BOT} why?", mention_bot=True, attachments=[log])
    (sent,) = await reply(discord_fake, msg, "Files I saw: pod.log.")
    assert sent.reply_to == msg["id"]
    asked = [r.json for r in fake.requests if r.path == CHAT and r.json][-1]["messages"][-1]
    assert asked["content"] == f"alice: why?\n\n📎 pod.log (2 lines):\n```\n{log_text}```"


async def test_a_voice_message_in_a_speak_channel_gets_transcript_answer_and_audio(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    mode = await discord_fake.interaction(
        "transcription", {"mode": "speak"}, permissions=MANAGE_GUILD
    )
    await answer(discord_fake, mode, "Voice messages here: speak")
    clip = discord_fake.attachment(
        "voice-message.ogg", fake_media.opus_audio(0.5), "audio/ogg", voice=True
    )
    msg = await discord_fake.message("", attachments=[clip], voice=True)
    await discord_fake.wait_for(lambda: any(f for m in discord_fake.in_channel() for f in m.files))
    sent = await reply(discord_fake, msg, "You said: «alice (voice message): (stand-in transcript")
    # The transcript replies to the voice message; the answer and its audio follow it (as a long
    # answer continues: MessageReplier replies with its first message only).
    _, transcript, said, audio = sent
    assert transcript.reply_to == msg["id"]
    assert transcript.content.startswith("🎙️ alice: (stand-in transcript of voice-message.ogg")
    assert "You said:" in said.content
    assert [name for name, _ in audio.files] == ["tokbot-answer.mp3"]
    assert [r.json["voice"] for r in fake.requests if r.path == "/v1/audio/speech" and r.json] == [
        "alloy"
    ]
    assert adapter.client is not None
    key = ConversationKey("discord", str(discord_fake.guild_id), str(discord_fake.channel_id))
    turns = await adapter.client.core.store.context_turns(key, 10)
    assert [(t.role, t.kind) for t in turns] == [
        (TurnRole.USER, TurnKind.TRANSCRIPT),
        (TurnRole.ASSISTANT, TurnKind.TEXT),
    ]


async def test_transcribe_with_answer_answers_an_uploaded_recording(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    audio = discord_fake.attachment("question.mp3", fake_media.mp3_audio(0.5), "audio/mpeg")
    inter = await discord_fake.interaction(
        "transcribe", {"answer": True}, attachments={"audio": audio}
    )
    await answer(discord_fake, inter, "You said: «alice (voice message): (stand-in transcript")

"""Every slash command through INTERACTION_CREATE, against the real discord.py and the fake."""

from __future__ import annotations

import asyncio
import json

import pytest

from adapters.discord import DiscordAdapter
from adapters.discord.fake import MANAGE_GUILD, FakeDiscord
from bot.tokmodel import fake_media
from bot.tokmodel.fake import FakeTokModel
from bot.tokmodel.fake_vision import images_in, solid_png
from tests.discord.conftest import ADMIN_ROLE, Start
from tests.discord.helpers import answer, text_of


async def test_ask_defers_then_streams_into_the_original_response(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    inter = await discord_fake.interaction("ask", {"question": "what is tokbot?"})
    messages = await answer(discord_fake, inter, "You said: «alice: what is tokbot?»")
    assert discord_fake.interaction_responses[inter["id"]] == [{"type": 5}]  # deferred, thinking
    assert len(messages) == 1 and messages[0].via == "interaction"


async def test_ask_takes_a_picture_as_an_option(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    shot = solid_png(10, 10, (30, 170, 50))
    image = discord_fake.attachment("shot.png", shot, "image/png")
    inter = await discord_fake.interaction(
        "ask", {"question": "what colour?"}, attachments={"image": image}
    )
    await answer(discord_fake, inter, "I see 1 picture(s): a 10×10 PNG, mostly green")
    chats = [r.json for r in fake.requests if r.path == "/v1/chat/completions"]
    assert images_in(chats[-1]) == [shot]


async def test_a_long_answer_continues_in_follow_ups(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    fake.set_reply("word " * 900)  # 4,500 characters
    inter = await discord_fake.interaction("ask", {"question": "talk a lot"})
    await discord_fake.wait_for(lambda: len(discord_fake.replies_to(inter)) == 3)
    messages = discord_fake.replies_to(inter)
    await discord_fake.wait_for(
        lambda: "".join(m.content for m in discord_fake.replies_to(inter)) == "word " * 900
    )
    assert [m.via for m in messages] == ["interaction", "followup", "followup"]
    assert all(len(m.content) <= 2000 for m in messages)


async def test_imagine_posts_a_png_file(adapter: DiscordAdapter, discord_fake: FakeDiscord) -> None:
    inter = await discord_fake.interaction("imagine", {"prompt": "a lighthouse", "size": "256x256"})
    messages = await answer(discord_fake, inter, "🎨 a lighthouse")
    files = [f for m in messages for f in m.files]
    assert len(files) == 1 and files[0][0] == "tokbot-image.png"
    assert files[0][1].startswith(b"\x89PNG")


async def test_imagine_edits_an_attached_image(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    png = fake_media.png_image(8, 8, "seed")
    image = discord_fake.attachment("pic.png", png, "image/png")
    inter = await discord_fake.interaction(
        "imagine", {"prompt": "make it blue"}, attachments={"image": image}
    )
    await answer(discord_fake, inter, "🎨 make it blue")
    assert any(r.path == "/v1/images/edits" for r in fake.requests)


async def test_tts_posts_audio_in_the_chosen_voice(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    inter = await discord_fake.interaction("tts", {"text": "stand-up now", "voice": "nova"})
    messages = await answer(discord_fake, inter, "🔊 Voice: nova")
    assert [f[0] for m in messages for f in m.files] == ["tokbot-speech.mp3"]


async def test_transcribe_an_uploaded_audio_file(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    audio = discord_fake.attachment("memo.mp3", fake_media.mp3_audio(0.5), "audio/mpeg")
    inter = await discord_fake.interaction("transcribe", attachments={"audio": audio})
    await answer(discord_fake, inter, "stand-in transcript of memo.mp3")


async def test_a_result_too_big_for_discord_gets_a_clear_reply(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    discord_fake.attachment_size_limit = 100
    inter = await discord_fake.interaction("tts", {"text": "hello"})
    await answer(discord_fake, inter, "larger than Discord allows here")


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("forget", {}, "Fresh start"),
        ("model", {}, "This channel uses `openai/gpt-4o-mini`"),
        ("persona", {}, "Persona (the default)"),
        ("transcription", {}, "Voice messages here: transcribe"),
        ("usage", {}, "📊 Usage"),
        ("help", {}, "/imagine"),
    ],
)
async def test_information_commands(
    adapter: DiscordAdapter,
    discord_fake: FakeDiscord,
    name: str,
    options: dict[str, str],
    expected: str,
) -> None:
    inter = await discord_fake.interaction(name, options)
    await answer(discord_fake, inter, expected)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("model", {"id": "openai/gpt-4o"}),
        ("persona", {"text": "You are a pirate."}),
        ("transcription", {"mode": "off"}),
    ],
)
async def test_settings_need_manage_server_or_an_admin_role(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, name: str, options: dict[str, str]
) -> None:
    refused = await discord_fake.interaction(name, options)
    await answer(discord_fake, refused, "Only admins can")
    by_permission = await discord_fake.interaction(name, options, permissions=MANAGE_GUILD)
    by_role = await discord_fake.interaction(name, options, roles=(ADMIN_ROLE,))
    for inter in (by_permission, by_role):
        await discord_fake.wait_for(
            lambda i=inter: text_of(discord_fake.replies_to(i)).strip() != ""
        )
        assert "Only admins" not in text_of(discord_fake.replies_to(inter))


async def test_admin_user_ids_count_as_admins(
    start_adapter: Start, discord_fake: FakeDiscord
) -> None:
    await start_adapter(TOKBOT_ADMIN_USER_IDS="4242")
    inter = await discord_fake.interaction("model", {"id": "openai/gpt-4o"}, user_id=4242)
    await answer(discord_fake, inter, "now uses `openai/gpt-4o`")


async def test_model_autocompletes_from_tokmodel(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    inter = await discord_fake.interaction("model", {"id": "claude"}, autocomplete="id")
    await discord_fake.wait_for(lambda: inter["id"] in discord_fake.interaction_responses)
    (response,) = discord_fake.interaction_responses[inter["id"]]
    assert response["type"] == 8
    assert [c["value"] for c in response["data"]["choices"]] == [
        "anthropic/claude-sonnet-4-5",
        "anthropic/claude-opus-4-5",
    ]


async def test_model_autocompletes_chat_models_only(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    inter = await discord_fake.interaction("model", {"id": "openai/"}, autocomplete="id")
    await discord_fake.wait_for(lambda: inter["id"] in discord_fake.interaction_responses)
    (response,) = discord_fake.interaction_responses[inter["id"]]
    assert [c["value"] for c in response["data"]["choices"]] == [
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
    ]


async def test_commands_sync_globally_by_default(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    names = {c["name"] for c in discord_fake.commands["global"]}
    assert {"ask", "imagine", "tts", "forget", "model", "persona", "usage", "help"} <= names
    assert {"transcription"} <= names
    tts = next(c for c in discord_fake.commands["global"] if c["name"] == "tts")
    voice = next(o for o in tts["options"] if o["name"] == "voice")
    assert [c["value"] for c in voice["choices"]][:2] == ["alloy", "echo"]
    model = next(c for c in discord_fake.commands["global"] if c["name"] == "model")
    assert next(o for o in model["options"] if o["name"] == "id")["autocomplete"] is True


async def test_a_dev_guild_gets_the_commands_instantly(
    start_adapter: Start, discord_fake: FakeDiscord
) -> None:
    await start_adapter(DISCORD_DEV_GUILD_ID=str(discord_fake.guild_id))
    assert "global" not in discord_fake.commands
    assert {c["name"] for c in discord_fake.commands[str(discord_fake.guild_id)]} >= {"ask"}


async def test_a_dm_slash_command_works(adapter: DiscordAdapter, discord_fake: FakeDiscord) -> None:
    inter = await discord_fake.interaction("ask", {"question": "psst"}, dm=True)
    await answer(discord_fake, inter, "You said: «alice: psst»")


async def test_every_bot_message_disables_mentions(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    fake.set_reply("@everyone look! <@&123> <@111>")
    inter = await discord_fake.interaction("ask", {"question": "ping them"})
    await answer(discord_fake, inter, "@everyone look!")
    msg = await discord_fake.message("<@900000000000000001> again", mention_bot=True)
    await discord_fake.wait_for(
        lambda: any(m.reply_to == msg["id"] for m in discord_fake.messages.values())
    )
    sends = [
        c
        for c in discord_fake.calls
        if c.method in ("POST", "PATCH")
        and (
            c.path.startswith("/webhooks/")
            or c.path.endswith("/messages")
            or "/messages/" in c.path
        )
    ]
    assert {c.path.split("/")[1] for c in sends} == {"webhooks", "channels"}
    for call in sends:
        assert call.json is not None, call
        assert call.json["allowed_mentions"]["parse"] == [], json.dumps(call.json)


async def test_a_slash_command_in_a_thread_uses_the_thread_conversation(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    first = await discord_fake.interaction("ask", {"question": "in the channel"})
    await answer(discord_fake, first, "in the channel")
    inter = await discord_fake.interaction(
        "ask", {"question": "in the thread"}, channel_id=discord_fake.thread_id
    )
    await answer(discord_fake, inter, "I can see 0 earlier message(s)")


async def test_streaming_edits_about_once_a_second(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    fake.chunk_delay = 0.05
    fake.set_reply("tick " * 50)  # about 2.5 seconds of streaming
    inter = await discord_fake.interaction("ask", {"question": "stream please"})
    await discord_fake.wait_for(
        lambda: text_of(discord_fake.replies_to(inter)).strip() == ("tick " * 50).strip()
    )
    edits = [c for c in discord_fake.calls if c.path.endswith("/messages/@original")]
    assert 2 <= len(edits) <= 5  # partial text shown while streaming, but throttled


async def test_a_command_discord_stopped_waiting_for_is_answered_in_the_channel(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    """Past Discord's 3-second window the interaction cannot be acknowledged (10062): the answer
    goes to the channel, saying whose command it answers, instead of being dropped."""
    late = await discord_fake.interaction("ask", {"question": "still there?"}, age=5.0)
    await discord_fake.wait_for(
        lambda: "You said" in text_of(discord_fake.in_channel()) and adapter.client is not None
    )
    preface, shown = [m for m in discord_fake.in_channel() if m.content]
    assert preface.content == (
        "⏳ alice: Discord stopped waiting for my reply to your `/ask`, so here it is."
    )
    assert shown.via == "channel" and shown.interaction_token is None
    assert "You said" in shown.content and "still there?" in shown.content
    assert discord_fake.interaction_responses.get(late["id"]) is None  # never acknowledged
    # A replay of the same interaction is not answered twice.
    await discord_fake.dispatch("INTERACTION_CREATE", late)
    await asyncio.sleep(0.3)
    assert len([m for m in discord_fake.in_channel() if "You said" in m.content]) == 1

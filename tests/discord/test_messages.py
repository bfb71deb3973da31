"""Mentions, replies to the bot, DMs, threads and voice messages through MESSAGE_CREATE."""

from __future__ import annotations

import asyncio

from adapters.discord import DiscordAdapter
from adapters.discord.fake import FakeDiscord
from bot.domain import ConversationKey, TurnKind
from bot.tokmodel import fake_media
from bot.tokmodel.fake import FakeTokModel
from bot.tokmodel.fake_vision import images_in, solid_png
from tests.discord.helpers import answer, reply

BOT = "<@900000000000000001>"


async def test_a_mention_is_answered_as_a_reply(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    msg = await discord_fake.message(f"{BOT} what's up?", mention_bot=True)
    (sent,) = await reply(discord_fake, msg, "You said: «alice: what's up?»")
    assert sent.reply_to == msg["id"]


async def test_a_reply_to_the_bot_continues_the_conversation(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    first = await discord_fake.message(f"{BOT} remember 42", mention_bot=True)
    (answer_1,) = await reply(discord_fake, first, "remember 42")
    second = await discord_fake.message("and what was it?", reply_to=answer_1.id)
    sent = await reply(discord_fake, second, "I can see 2 earlier message(s)")
    assert sent[-1].reply_to == second["id"]


async def test_a_dm_is_answered(adapter: DiscordAdapter, discord_fake: FakeDiscord) -> None:
    msg = await discord_fake.message("hello in private", dm=True)
    (sent,) = await reply(discord_fake, msg, "You said: «alice: hello in private»")
    assert sent.reply_to == msg["id"]


async def test_other_messages_and_bots_are_ignored(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    await discord_fake.message("just chatting")
    await discord_fake.message(f"{BOT} hi from a bot", mention_bot=True, bot=True)
    await asyncio.sleep(0.3)
    assert discord_fake.messages == {}
    assert not fake.requests


async def test_a_thread_is_its_own_conversation_with_the_channel_settings(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    persona = await discord_fake.interaction(
        "persona", {"text": "You are a pirate."}, permissions=1 << 5
    )
    await answer(discord_fake, persona, "Persona updated")
    await reply(
        discord_fake,
        await discord_fake.message(f"{BOT} in the channel", mention_bot=True),
        "in the channel",
    )
    msg = await discord_fake.message(
        f"{BOT} in the thread", mention_bot=True, channel_id=discord_fake.thread_id
    )
    await reply(
        discord_fake,
        msg,
        "I can see 0 earlier message(s) in this conversation. Persona: «You are a pirate.»",
    )
    assert adapter.client is not None
    store = adapter.client.core.store
    key = ConversationKey(
        "discord",
        str(discord_fake.guild_id),
        str(discord_fake.channel_id),
        str(discord_fake.thread_id),
    )
    turns = await store.context_turns(key, 10)
    assert [t.content for t in turns][:1] == ["in the thread"]


async def test_a_voice_message_is_transcribed_and_stored(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    clip = discord_fake.attachment(
        "voice-message.ogg", fake_media.opus_audio(0.5), "audio/ogg", voice=True
    )
    msg = await discord_fake.message("", attachments=[clip], voice=True)
    (sent,) = await reply(discord_fake, msg, "🎙️ alice: (stand-in transcript of voice-message.ogg")
    assert sent.reply_to == msg["id"]
    assert adapter.client is not None
    key = ConversationKey("discord", str(discord_fake.guild_id), str(discord_fake.channel_id))
    turns = await adapter.client.core.store.context_turns(key, 10)
    assert [t.kind for t in turns] == [TurnKind.TRANSCRIPT]
    # the transcript is history: a mention afterwards sees it
    mention = await discord_fake.message(f"{BOT} summarise", mention_bot=True)
    await reply(discord_fake, mention, "I can see 1 earlier message(s)")


async def test_an_audio_upload_is_transcribed_or_translated_per_the_channel_mode(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    mode = await discord_fake.interaction(
        "transcription", {"mode": "translate"}, permissions=1 << 5
    )
    await answer(discord_fake, mode, "Voice messages here: translate")
    upload = discord_fake.attachment("memo.wav", fake_media.wav_audio(0.3), "audio/wav")
    msg = await discord_fake.message("", attachments=[upload])
    await reply(discord_fake, msg, "🎙️ (translated) alice:")


async def test_voice_messages_are_left_alone_when_transcription_is_off(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    mode = await discord_fake.interaction("transcription", {"mode": "off"}, roles=(555,))
    await answer(discord_fake, mode, "Voice messages here: off")
    clip = discord_fake.attachment("v.ogg", fake_media.opus_audio(0.3), "audio/ogg", voice=True)
    await discord_fake.message("", attachments=[clip], voice=True)
    await asyncio.sleep(0.3)
    assert len(discord_fake.messages) == 1
    assert not any("audio" in r.path for r in fake.requests)


def test_only_the_bots_own_mention_is_stripped() -> None:
    from adapters.discord.translate import strip_mentions

    assert strip_mentions("<@42> hi <@!7> and <@42>", 42) == "hi <@!7> and"


async def test_a_long_answer_to_a_mention_continues_in_the_channel(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    fake.set_reply("line of text\n" * 300)  # 3,900 characters
    msg = await discord_fake.message(f"{BOT} long please", mention_bot=True)
    await discord_fake.wait_for(
        lambda: "".join(m.content for m in discord_fake.in_channel()) == "line of text\n" * 300
    )
    sent = discord_fake.in_channel()
    assert len(sent) == 2 and sent[0].reply_to == msg["id"] and sent[1].reply_to is None
    assert all(len(m.content) <= 2000 for m in sent)
    # The typing indicator goes out beside the work, but always before the first message.
    paths = [c.path for c in discord_fake.calls if c.path.startswith("/channels/")]
    typing = next(i for i, path in enumerate(paths) if path.endswith("/typing"))
    assert typing < next(i for i, path in enumerate(paths) if path.endswith("/messages"))


async def test_a_mention_with_a_picture_and_imagine_edits_it(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    picture = discord_fake.attachment("dot.png", fake_media.png_image(64, 64, "d"), "image/png")
    msg = await discord_fake.message(
        f"{BOT} imagine make it blue", mention_bot=True, attachments=[picture]
    )
    await discord_fake.wait_for(
        lambda: any(m.files for m in discord_fake.in_channel(msg["channel_id"]))
    )
    edit = next(r for r in fake.requests if r.path == "/v1/images/edits")
    assert edit.form.get("prompt") == "make it blue"
    (sent,) = [m for m in discord_fake.in_channel(msg["channel_id"]) if m.files]
    assert fake_media.is_png(sent.files[0][1])


async def test_called_into_a_thread_the_bot_reads_what_was_said_before(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    thread = discord_fake.thread_id
    await discord_fake.message("the build is red again", channel_id=thread)
    await discord_fake.message("flaky test?", user_id=222, user_name="bob", channel_id=thread)
    msg = await discord_fake.message(f"{BOT} what now?", mention_bot=True, channel_id=thread)
    await reply(discord_fake, msg, "I can see 2 earlier message(s)")
    asked = [r for r in fake.requests if r.path == "/v1/chat/completions"][-1].json
    assert asked is not None
    said = [m["content"] for m in asked["messages"] if m["role"] == "user"]
    assert said == ["alice: the build is red again", "bob: flaky test?", "alice: what now?"]
    again = await discord_fake.message(f"{BOT} and then?", mention_bot=True, channel_id=thread)
    await reply(discord_fake, again, "I can see 4 earlier message(s)")
    reads = [c for c in discord_fake.calls if c.method == "GET" and c.path.endswith("/messages")]
    assert len(reads) == 1  # read once; after that the stored history is the context


async def test_a_mention_with_a_picture_is_answered_from_it_and_so_is_a_follow_up(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    shot = solid_png(48, 24, (250, 140, 190))
    picture = discord_fake.attachment("shot.png", shot, "image/png")
    msg = await discord_fake.message(f"{BOT} what is it?", mention_bot=True, attachments=[picture])
    (sent,) = await reply(discord_fake, msg, "I see 1 picture(s): a 48×24 PNG, mostly pink")
    chats = [r.json for r in fake.requests if r.path == "/v1/chat/completions"]
    assert images_in(chats[-1]) == [shot]
    follow_up = await discord_fake.message("and its size?", reply_to=sent.id)
    # The whole second answer (the first one also ends with what the picture shows).
    await discord_fake.wait_for(
        lambda: any(
            "and its size?" in m.content and m.content.endswith("mostly pink.")
            for m in discord_fake.in_channel(follow_up["channel_id"])
        )
    )
    chats = [r.json for r in fake.requests if r.path == "/v1/chat/completions"]
    assert len(chats) == 2 and images_in(chats[-1]) == [shot]

"""Discord's 2,000-character message limit: the fake refuses more, as Discord does, and every
message the bot sends fits (split into several messages, or shortened with "…")."""

from __future__ import annotations

import io

import aiohttp
import discord
import pytest

from adapters.discord import DiscordAdapter
from adapters.discord.fake import MANAGE_GUILD, FakeDiscord
from bot.tokmodel import fake_media
from tests.discord.conftest import TOKEN
from tests.discord.helpers import answer, reply, text_of

BOT = "<@900000000000000001>"
LONG_PERSONA = ("Speak like a ship's captain. " * 120).strip()  # about 3,500 characters


def _all_fit(fake: FakeDiscord) -> None:
    assert all(len(m.content) <= 2000 for m in fake.messages.values())
    refused = [c for c in fake.calls if _content_length(c.json) > 2000]
    assert refused == [], "the bot sent more than 2,000 characters"


def _content_length(body: object) -> int:
    if not isinstance(body, dict):
        return 0
    data = body.get("data")
    content = (data if isinstance(data, dict) else body).get("content")
    return len(content) if isinstance(content, str) else 0


async def test_the_fake_refuses_content_over_2000_characters_as_discord_does(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    assert adapter.client is not None
    channel = adapter.client.get_partial_messageable(discord_fake.channel_id)
    with pytest.raises(discord.HTTPException) as refused:
        await channel.send("x" * 2001)
    assert refused.value.status == 400 and refused.value.code == 50035
    assert "In content: Must be 2000 or fewer in length." in refused.value.text
    await channel.send("x" * 2000)  # exactly the limit is fine
    with pytest.raises(discord.HTTPException) as refused:  # multipart: content in payload_json
        await channel.send("x" * 2001, file=discord.File(io.BytesIO(b"data"), "a.txt"))
    assert refused.value.code == 50035
    async with aiohttp.ClientSession() as http:  # the check comes before any look-up
        callback = f"{discord_fake.api_base}/interactions/1/itoken-1/callback"
        body = {"type": 4, "data": {"content": "y" * 2001}}
        async with http.post(callback, json=body) as response:
            assert response.status == 400
            error = await response.json()
        assert error["code"] == 50035
        assert error["errors"]["data"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
        followup = f"{discord_fake.api_base}/webhooks/{discord_fake.application_id}/{TOKEN}"
        async with http.post(followup, json={"content": "z" * 2001}) as response:
            assert response.status == 400


async def _set_long_persona(fake: FakeDiscord) -> None:
    inter = await fake.interaction("persona", {"text": LONG_PERSONA}, permissions=MANAGE_GUILD)
    await answer(fake, inter, "Persona updated")


async def test_the_fake_refuses_an_empty_message_as_discord_does(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    assert adapter.client is not None
    channel = adapter.client.get_partial_messageable(discord_fake.channel_id)
    with pytest.raises(discord.HTTPException) as refused:
        await channel.send("")
    assert refused.value.status == 400 and refused.value.code == 50006
    await channel.send(file=discord.File(io.BytesIO(b"data"), "a.txt"))  # a file alone is fine


async def test_a_long_persona_is_shown_in_several_messages(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    await _set_long_persona(discord_fake)
    inter = await discord_fake.interaction("persona")
    await discord_fake.wait_for(lambda: "Admins can" in text_of(discord_fake.replies_to(inter)))
    shown = discord_fake.replies_to(inter)
    assert len(shown) == 2 and [m.via for m in shown] == ["interaction", "followup"]
    assert LONG_PERSONA in "".join(m.content for m in shown)
    _all_fit(discord_fake)


async def test_a_long_persona_asked_by_mention_is_shown_in_several_messages(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    await _set_long_persona(discord_fake)
    msg = await discord_fake.message(f"{BOT} /persona", mention_bot=True)
    sent = await reply(discord_fake, msg, "Admins can")
    mine = [m for m in sent if m.interaction_token is None]
    assert len(mine) == 2 and mine[0].reply_to == msg["id"]
    assert LONG_PERSONA in "".join(m.content for m in mine)
    _all_fit(discord_fake)


async def test_a_long_transcript_is_posted_in_several_messages(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    name = "n" * 2100 + ".ogg"  # the stand-in's transcript names the file
    clip = discord_fake.attachment(name, fake_media.opus_audio(0.3), "audio/ogg", voice=True)
    msg = await discord_fake.message("", attachments=[clip], voice=True)
    sent = await reply(discord_fake, msg, "bytes)")
    assert len(sent) == 2 and sent[0].content.startswith("🎙️ alice: (stand-in transcript")
    _all_fit(discord_fake)


async def test_a_long_image_prompt_is_shortened_in_the_caption(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    prompt = "a lighthouse " * 200  # 2,600 characters
    inter = await discord_fake.interaction("imagine", {"prompt": prompt.strip()})
    messages = await answer(discord_fake, inter, "🎨 a lighthouse")
    await discord_fake.wait_for(lambda: any(m.files for m in discord_fake.replies_to(inter)))
    caption = next(m for m in messages if m.content.startswith("🎨"))
    assert len(caption.content) == 2000 and caption.content.endswith("…")
    _all_fit(discord_fake)


async def test_a_long_answer_to_a_late_command_fits_in_the_channel(
    adapter: DiscordAdapter, discord_fake: FakeDiscord
) -> None:
    await _set_long_persona(discord_fake)
    await discord_fake.interaction("persona", age=5.0)
    await discord_fake.wait_for(lambda: "Admins can" in text_of(discord_fake.in_channel()))
    shown = [m for m in discord_fake.in_channel() if m.via == "channel"]
    assert shown[0].content.startswith("⏳ alice: Discord stopped waiting")
    assert LONG_PERSONA in "".join(m.content for m in shown[1:])
    _all_fit(discord_fake)

"""Slash commands over signed HTTP: acknowledged at once, answered in the channel."""

from __future__ import annotations

import json
from collections.abc import Callable

import aiohttp

from adapters.slack.fake import FakeSlack
from adapters.slack.replier import INVITE_ME
from bot.settings import Settings
from bot.tokmodel.fake import FakeTokModel
from tests.slack.conftest import ADA, ALICE, BOB, CHANNEL, Bot, running


async def test_ask_is_acked_then_streamed_into_the_channel(bot: Bot, fake: FakeTokModel) -> None:
    status, body = await bot.command("/ask", "what is tokbot?")
    assert status == 200
    assert json.loads(body)["response_type"] == "in_channel"
    [answer] = await bot.replies(1)
    assert "You said: «alice: what is tokbot?»" in answer
    [message] = bot.slack.messages
    assert message.thread_ts is None  # slash commands answer in the channel itself
    assert message.edits, "the answer was posted as a placeholder, then updated in place"
    placeholder = bot.slack.calls_to("chat.postMessage")[0].args["text"]
    assert placeholder == "_thinking…_"


async def test_long_answers_continue_in_further_messages(bot: Bot, fake: FakeTokModel) -> None:
    fake.set_reply("word " * 2000)  # 10,000 characters
    await bot.command("/ask", "talk a lot")
    texts = await bot.replies(3)
    assert len(texts) == 3
    assert all(len(t) <= 3900 for t in texts)
    assert "".join(texts).split() == ["word"] * 2000


async def test_forget_usage_help(bot: Bot) -> None:
    await bot.command("/ask", "first question")
    await bot.replies(1)
    await bot.command("/forget")
    assert "Fresh start" in (await bot.replies(2))[-1]
    await bot.command("/usage")
    assert "you: 1 requests" in (await bot.private_replies(1))[-1]
    await bot.command("/help")
    help_text = (await bot.private_replies(2))[-1]
    assert "/imagine" in help_text and "/transcription" in help_text
    assert len(bot.slack.messages) == 2  # the answer and "Fresh start"


async def test_model_and_persona_need_an_admin_to_change(bot: Bot) -> None:
    await bot.command("/model")
    assert "This channel uses `openai/gpt-4o-mini`" in (await bot.replies(1))[-1]
    await bot.command("/model", "openai/gpt-4o", user_id=ALICE)
    assert "Only admins" in (await bot.private_replies(1))[-1]  # a refusal: private
    await bot.command("/model", "openai/gpt-4o", user_id=ADA, user_name="ada")
    assert "now uses `openai/gpt-4o`" in (await bot.replies(2))[-1]
    await bot.command("/persona", "You are a pirate.", user_id=BOB)  # TOKBOT_ADMIN_USER_IDS
    assert "Persona updated" in (await bot.replies(3))[-1]
    await bot.command("/persona")
    assert "\n> You are a pirate." in (await bot.replies(4))[-1]  # a quote, as mrkdwn
    await bot.command("/transcription", "translate", user_id=ALICE)
    assert "Only admins" in (await bot.private_replies(2))[-1]
    await bot.command("/transcription", "translate", user_id=ADA)
    assert "Voice messages here: translate" in (await bot.replies(5))[-1]
    # users.info is asked once per person (cached), and only for admin-only changes.
    looked_up = [c.args["user"] for c in bot.slack.calls_to("users.info")]
    assert sorted(looked_up) == [ADA, ALICE, BOB]


async def test_model_output_cannot_ping_anyone(bot: Bot, fake: FakeTokModel) -> None:
    fake.set_reply("Hey <!channel> and <!here> <!everyone> <!subteam^S123|@devs> <@U0BOSS> & co")
    await bot.command("/ask", "ping everyone please")
    [answer] = await bot.replies(1)
    assert "<" not in answer and ">" not in answer
    assert "&lt;!channel&gt;" in answer and "&lt;!subteam^S123|@devs&gt;" in answer
    assert "&amp; co" in answer
    for call in bot.slack.calls_to("chat.postMessage") + bot.slack.calls_to("chat.update"):
        assert "<!" not in call.args["text"]


async def test_imagine_and_tts_upload_files_into_the_channel(bot: Bot) -> None:
    await bot.command("/imagine", "--size 256x256 a lighthouse")
    await bot.slack.wait_for(lambda: len(bot.slack.uploads) == 1 and bot.adapter.bot.busy == 0)
    await bot.command("/tts", "hello team")
    await bot.slack.wait_for(lambda: len(bot.slack.uploads) == 2 and bot.adapter.bot.busy == 0)
    image, speech = bot.slack.uploads
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n") and image.filename.endswith(".png")
    assert image.channel == CHANNEL and image.thread_ts is None
    assert speech.filename.endswith(".mp3") and len(speech.data) > 100
    assert speech.channel == CHANNEL
    texts = bot.slack.texts(CHANNEL)
    assert texts == ["🎨 a lighthouse", "🔊 Voice: alloy"]  # the status messages, updated
    for method in ("files.getUploadURLExternal", "files.completeUploadExternal"):
        assert len(bot.slack.calls_to(method)) == 2


async def test_options_after_the_text_are_read(bot: Bot, fake: FakeTokModel) -> None:
    await bot.command("/imagine", "a lighthouse --size 256x256")
    await bot.command("/tts", "hello team --voice nova")
    await bot.slack.wait_for(lambda: len(bot.slack.uploads) == 2 and bot.adapter.bot.busy == 0)
    assert sorted(bot.slack.texts(CHANNEL)) == ["🎨 a lighthouse", "🔊 Voice: nova"]
    [drawn] = [r.json for r in fake.requests if r.path == "/v1/images/generations"]
    assert drawn is not None and (drawn["prompt"], drawn["size"]) == ("a lighthouse", "256x256")
    [spoken] = [r.json for r in fake.requests if r.path == "/v1/audio/speech"]
    assert spoken is not None and (spoken["input"], spoken["voice"]) == ("hello team", "nova")


async def test_bad_input_gets_a_one_line_answer(bot: Bot) -> None:
    await bot.command("/ask")
    await bot.command("/frobnicate")
    texts = await bot.private_replies(2)
    assert any("Ask me something" in t for t in texts)
    assert any("Unknown command /frobnicate" in t for t in texts)


async def test_a_public_channel_is_joined_and_a_private_one_asks_for_an_invite(bot: Bot) -> None:
    bot.slack.not_in_channel |= {"C0RANDOM", "G0SECRET"}
    await bot.command("/forget", channel_id="C0RANDOM")
    [reply] = await bot.replies(1, channel="C0RANDOM")
    assert "Fresh start" in reply
    assert [c.args["channel"] for c in bot.slack.calls_to("conversations.join")] == ["C0RANDOM"]
    await bot.command("/forget", channel_id="G0SECRET")
    await bot.slack.wait_for(lambda: bool(bot.slack.responses) and bot.adapter.bot.busy == 0)
    assert bot.slack.responses == [{"response_type": "ephemeral", "text": INVITE_ME}]
    assert bot.slack.texts("G0SECRET") == []


async def test_healthz_reports_slack(bot: Bot) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{bot.web.port}/healthz") as response,
    ):
        assert response.status == 200
        assert (await response.json())["checks"] == {"slack": True}


async def test_images_reach_a_public_channel_the_bot_had_not_joined(bot: Bot) -> None:
    bot.slack.not_in_channel.add("C0RANDOM")
    bot.slack.public_only.add("C0RANDOM")  # chat:write.public: messages yes, files no
    await bot.command("/imagine", "--size 256x256 a fox", channel_id="C0RANDOM")
    await bot.slack.wait_for(lambda: len(bot.slack.uploads) == 1 and bot.adapter.bot.busy == 0)
    assert bot.slack.uploads[0].channel == "C0RANDOM"
    assert len(bot.slack.calls_to("conversations.join")) == 1


async def test_stop_lets_an_answer_in_progress_finish(bot: Bot, fake: FakeTokModel) -> None:
    fake.chunk_delay = 0.05
    await bot.command("/ask", "take your time")
    await bot.slack.wait_for(lambda: bool(bot.slack.messages))
    assert bot.adapter.bot.busy == 1
    await bot.adapter.stop()
    assert bot.adapter.bot.busy == 0
    [answer] = bot.slack.texts(CHANNEL)
    assert "take your time" in answer and answer.endswith("».")
    status, _ = await bot.command("/help")
    assert status == 503  # while shutting down, Slack is asked to retry elsewhere / later


async def test_streamed_answers_are_updated_about_once_a_second(
    slack_settings: Callable[..., Settings], slack: FakeSlack, fake: FakeTokModel
) -> None:
    fake.chunk_delay = 0.1  # the stand-in's answer takes about two and a half seconds
    async with running(slack_settings(), slack, fake, edit_interval=1.0) as bot:
        await bot.command("/ask", "slowly please")
        [answer] = await bot.replies(1)
    updates = [c.time for c in slack.calls_to("chat.update")]
    assert len(updates) >= 2, updates
    gaps = [later - earlier for earlier, later in zip(updates, updates[1:], strict=False)]
    assert all(gap >= 0.9 for gap in gaps[:-1]), gaps  # the last is the final render
    assert "slowly please" in answer

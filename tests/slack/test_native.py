"""Slack's AI experience with the real slack-bolt against the fake Slack: native streaming (and
its fallback to chat.update), the thinking status, and the assistant pane."""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import replier
from adapters.slack.assistant import GREETING, THINKING, title_of
from adapters.slack.fake import FakeSlack
from adapters.slack.replier import SlackReplier
from adapters.slack.streaming import (
    MAX_MARKDOWN,
    Mode,
    SlackStream,
    StreamingPolicy,
    harmless,
)
from adapters.slack.translate import conversation_key
from bot.domain import AnswerControls
from bot.settings import Settings
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.conftest import API_KEY
from tests.slack.conftest import CHANNEL, Bot, running

DM = "D0ALICE"
ANSWER = (
    "## Plan\n\n**Bold** and *italic*, `code`, a [link](https://example.com/a_b).\n\n"
    "- one\n- two\n\n```python\nprint('hi')\n```"
)


def methods(slack: FakeSlack) -> list[str]:
    return [c.method for c in slack.calls if c.method.startswith(("chat.", "assistant."))]


async def test_a_mention_streams_natively_with_the_exact_markdown(
    bot: Bot, fake: FakeTokModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replier, "STOP_OFFER_AFTER", 0)  # offered at once, however short
    fake.set_reply(ANSWER)
    fake.chunk_delay = 0.01  # a few appends
    event = bot.slack.message_event("plan it", mention=True)
    await bot.event(event)
    [text] = await bot.replies(1, thread_ts=event["ts"])
    [message] = bot.slack.messages
    assert text == ANSWER and message.markdown and not message.streaming
    assert "".join(message.appends) == ANSWER  # every call only added to the end
    calls = methods(bot.slack)
    assert calls[0] == "chat.startStream" and calls[-1] == "chat.stopStream"
    streaming = {"chat.startStream", "chat.appendStream", "chat.stopStream"}
    assert set(calls) == streaming | {"chat.postEphemeral"}  # the asker's Stop button
    [stop_offer] = bot.slack.ephemeral
    assert stop_offer.user == "U0ALICE" and stop_offer.thread_ts == event["ts"]
    assert stop_offer.blocks is not None
    [stop] = [e for b in stop_offer.blocks if b["type"] == "actions" for e in b["elements"]]
    assert stop["action_id"] == "tokbot_stop"
    # The finished message has the feedback buttons (chat.stopStream's blocks).
    assert message.blocks is not None and message.blocks[0]["type"] == "context_actions"
    assert message.blocks[0]["elements"][0]["type"] == "feedback_buttons"
    start = bot.slack.calls_to("chat.startStream")[0].args
    assert start["recipient_user_id"] == "U0ALICE" and start["recipient_team_id"] == "T0FAKE"
    key = conversation_key(bot.slack.team_id, CHANNEL, event["ts"])
    [*_, stored] = await bot.core.store.history(key, 5)
    assert stored.content == ANSWER and stored.platform_message_id == message.ts
    assert stop["value"] == str(stored.id)


async def test_the_stop_offer_does_not_hold_up_the_stream(
    bot: Bot, fake: FakeTokModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 16: the offer (an ephemeral message) used to come between the stream's first call
    # and its next, which then waited a Web API round trip.
    monkeypatch.setattr(replier, "STOP_OFFER_AFTER", 0)
    fake.set_reply(ANSWER)
    fake.chunk_delay = 0.01
    bot.slack.delay("chat.postEphemeral", 0.5)
    event = bot.slack.message_event("plan it", mention=True)
    await bot.event(event)
    [text] = await bot.replies(1, thread_ts=event["ts"])
    assert text == ANSWER
    [offered] = bot.slack.calls_to("chat.postEphemeral")
    [stopped] = bot.slack.calls_to("chat.stopStream")
    assert stopped.time - offered.time < 0.5  # sent while the offer was still on its way
    assert len(bot.slack.ephemeral) == 1  # and the answer was done only once it was shown


async def test_an_answer_done_within_a_moment_is_not_offered_a_stop_button(
    bot: Bot, fake: FakeTokModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 16: nobody can click Stop on an answer that finishes as it appears; not offering
    # it saves a chat.postEphemeral per short answer. (test_buttons: a long one is offered it.)
    monkeypatch.setattr(replier, "STOP_OFFER_AFTER", 30.0)  # the moment outlasts the stream
    fake.set_reply(ANSWER)
    fake.chunk_delay = 0.01  # streamed: a few appends
    event = bot.slack.message_event("plan it", mention=True)
    await bot.event(event)
    [text] = await bot.replies(1, thread_ts=event["ts"])
    assert text == ANSWER
    assert "chat.appendStream" in methods(bot.slack)  # it did stream
    assert not bot.slack.calls_to("chat.postEphemeral") and not bot.slack.ephemeral


async def test_a_dm_shows_the_thinking_status_until_the_stream_starts(bot: Bot) -> None:
    dm = bot.slack.message_event("hi in private", channel=DM, channel_type="im")
    await bot.event(dm)
    [answer] = await bot.replies(1, channel=DM, thread_ts=dm["ts"])
    assert "hi in private" in answer
    calls = methods(bot.slack)
    assert calls.index("assistant.threads.setStatus") < calls.index("chat.startStream")
    status = bot.slack.calls_to("assistant.threads.setStatus")[0].args
    assert status["status"] == THINKING and status["loading_messages"]
    # Cleared by the reply (as Slack does), so no call to clear it; no placeholder either.
    assert bot.slack.thread(DM, dm["ts"]).statuses == [THINKING, ""]
    assert "chat.postMessage" not in calls


async def test_a_refused_stream_falls_back_to_post_and_update_for_the_workspace(
    bot: Bot, fake: FakeTokModel, caplog: pytest.LogCaptureFixture
) -> None:
    bot.slack.refuse_streaming("unknown_method")
    fake.set_reply(ANSWER)
    caplog.set_level(logging.WARNING)
    first = bot.slack.message_event("plan it", mention=True)
    await bot.event(first)
    [text] = await bot.replies(1, thread_ts=first["ts"])
    assert text == (  # converted to mrkdwn, the whole answer
        "*Plan*\n\n*Bold* and _italic_, `code`, a <https://example.com/a_b|link>.\n\n"
        "• one\n• two\n\n```\nprint('hi')\n```"
    )
    assert bot.slack.calls_to("chat.postMessage")
    second = bot.slack.message_event("again", mention=True)
    await bot.event(second)
    await bot.replies(1, thread_ts=second["ts"])
    assert len(bot.slack.calls_to("chat.startStream")) == 1  # not asked again
    refusals = [r for r in caplog.records if "refuses chat.startStream" in r.getMessage()]
    assert len(refusals) == 1  # said once


@pytest.mark.parametrize("mode", ["update", "native"])
async def test_the_setting_forces_a_path(
    slack_settings: Callable[..., Settings], slack: FakeSlack, fake: FakeTokModel, mode: str
) -> None:
    if mode == "native":
        slack.refuse_streaming(None, 404)  # an old server: 404, no JSON
    async with running(slack_settings(TOKBOT_SLACK_STREAMING=mode), slack, fake) as bot:
        for text in ("one", "two"):
            event = slack.message_event(text, mention=True)
            await bot.event(event)
            [answer] = await bot.replies(1, thread_ts=event["ts"])
            assert text in answer
    starts = len(slack.calls_to("chat.startStream"))
    # update: never streamed; native: tried for every answer (each fell back on its own)
    assert starts == (0 if mode == "update" else 2)


async def test_the_assistant_pane_greets_suggests_and_titles(bot: Bot) -> None:
    started = bot.slack.assistant_event(viewing=CHANNEL)
    thread = started["assistant_thread"]["thread_ts"]
    await bot.event(started)
    await bot.slack.wait_for(lambda: bool(bot.slack.thread(DM, thread).prompts))
    assert bot.slack.texts(DM, thread) == [GREETING]
    prompts = bot.slack.thread(DM, thread).prompts
    assert 3 <= len(prompts) <= 4 and any(f"<#{CHANNEL}>" in p["message"] for p in prompts)
    # The person moves to a DM with someone: prompts no longer about a channel.
    changed = bot.slack.assistant_event(
        "assistant_thread_context_changed", thread_ts=thread, viewing="D0SOMEONE"
    )
    await bot.event(changed)
    await bot.slack.wait_for(
        lambda: not any("<#" in p["message"] for p in bot.slack.thread(DM, thread).prompts)
    )
    # A message in the pane is answered without a mention, and titles the thread.
    question = "What is a good name for a cat that likes boxes and long naps in the sun?"
    message = bot.slack.message_event(question, channel=DM, channel_type="im", thread_ts=thread)
    await bot.event(message)
    answers = await bot.replies(2, channel=DM, thread_ts=thread)
    assert question in answers[-1]
    assert bot.slack.thread(DM, thread).title == title_of(question)
    assert title_of(question).endswith("…") and len(title_of(question)) <= 60
    await bot.event(
        bot.slack.message_event("and a dog?", channel=DM, channel_type="im", thread_ts=thread)
    )
    await bot.replies(3, channel=DM, thread_ts=thread)
    assert len(bot.slack.calls_to("assistant.threads.setTitle")) == 1  # the first question only


def test_mention_tokens_are_broken_and_a_last_lt_is_held_back() -> None:
    text = "hey <!channel> and <@U123> in <#C1|x>; a < b; <!-- c -->"
    safe = harmless(text, finished=True)
    assert "<!channel>" not in safe and "<@U123>" not in safe and "<#C1" not in safe
    assert safe.replace("\u200b", "") == text  # nothing else changes
    assert harmless("a <", finished=False) == "a "
    assert harmless("a <", finished=True) == "a <"


async def test_a_long_answer_is_sent_in_parts_slack_accepts(
    slack: FakeSlack, fake: FakeTokModel
) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    stream = await SlackStream.start(
        client, channel=DM, thread_ts="1.000001", markdown="start ", recipient=None
    )
    assert stream is not None
    long_text = "x" * (MAX_MARKDOWN * 2 + 5)
    await stream.append(long_text)
    await stream.stop(long_text)
    [message] = slack.messages
    assert message.text == "start " + long_text * 2 and not message.streaming
    assert max(len(part) for part in message.appends) <= MAX_MARKDOWN


async def test_the_thinking_status_is_cleared_when_the_answer_fails(
    bot: Bot, fake: FakeTokModel
) -> None:
    fake.fail(Fault(status=403, path="/v1/chat/completions"))
    dm = bot.slack.message_event("are you there?", channel=DM, channel_type="im")
    await bot.event(dm)
    [apology] = await bot.replies(1, channel=DM, thread_ts=dm["ts"])
    assert "credits" in apology
    assert bot.slack.thread(DM, dm["ts"]).statuses == [THINKING, ""]
    assert bot.slack.thread(DM, dm["ts"]).status == ""


async def test_a_private_reply_clears_the_status_itself(bot: Bot) -> None:
    dm = bot.slack.message_event("/help", channel=DM, channel_type="im")
    await bot.event(dm)
    await bot.private_replies(1)
    await bot.slack.wait_for(lambda: len(bot.slack.calls_to("assistant.threads.setStatus")) == 2)
    cleared = bot.slack.calls_to("assistant.threads.setStatus")[-1].args
    assert cleared["status"] == "" and "loading_messages" not in cleared
    assert bot.slack.messages == []  # nothing public was posted


async def test_a_stream_slack_expired_is_finished_with_chat_update(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    stream = await SlackStream.start(
        client, channel=DM, thread_ts="1.000001", markdown="**Hello** ", recipient=None
    )
    assert stream is not None
    slack.messages[0].streaming = False  # Slack ended it (message_not_in_streaming_state)
    await stream.append("wor")
    await stream.stop("ld")
    [message] = slack.messages
    assert message.text == "*Hello* world" and not message.markdown  # mrkdwn via chat.update
    assert [c.method for c in slack.calls][-1] == "chat.update"


async def test_a_long_answer_continues_in_a_second_stream_with_one_stop_offer(
    bot: Bot, fake: FakeTokModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replier, "STOP_OFFER_AFTER", 0)  # offered at once, in the first stream
    fake.set_reply(" ".join(f"w{n}" for n in range(1200)))  # ~6,000 characters
    fake.chunk_chars = 400
    event = bot.slack.message_event("go on", mention=True)
    await bot.event(event)
    texts = await bot.replies(2, thread_ts=event["ts"])
    first, second = bot.slack.messages
    assert first.markdown and second.markdown and not first.streaming and not second.streaming
    assert " ".join(texts).split() == [f"w{n}" for n in range(1200)]
    assert first.blocks is None and second.blocks is not None  # 👍/👎 under the last only
    assert len(bot.slack.ephemeral) == 1  # the asker's Stop offer, once


async def test_a_native_stream_can_never_ping_or_show_a_secret(
    bot: Bot, fake: FakeTokModel
) -> None:
    fake.set_reply(f"Hey <!channel> and <!here>, ask <@U0BOB> in <#C0OTHER>: the key is {API_KEY}.")
    fake.chunk_chars = 3  # tokens and the key arrive in pieces
    event = bot.slack.message_event("say it", mention=True)
    await bot.event(event)
    [text] = await bot.replies(1, thread_ts=event["ts"])
    [message] = bot.slack.messages
    assert message.markdown
    sent = [c.args.get("markdown_text") or "" for c in bot.slack.calls]
    for shown in [text, *sent]:
        assert not any(token in shown for token in ("<!", "<@", "<#")), shown
        assert API_KEY not in shown and API_KEY[:8] not in shown
    assert "[redacted]" in text and "channel" in text


async def test_an_answer_complete_before_it_streams_is_one_markdown_post(slack: FakeSlack) -> None:
    """TokModel answered at once: one chat.postMessage (a `markdown` block, as a stream would
    render it, and the buttons), not chat.startStream + chat.stopStream."""
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url, session=session)

        def replier(mode: Mode) -> SlackReplier:
            return SlackReplier(
                client, session, token=slack.bot_token, channel=CHANNEL, thread_ts="1.000001",
                user_id="U0ALICE", workspace=slack.team_id, streaming=StreamingPolicy(mode),
            )  # fmt: skip

        native = replier("native")
        done = AnswerControls(turn_id=3, asker_id="U0ALICE", streaming=False)
        ts = await native.post_whole("**Done** <!here>", controls=done)
        assert await replier("update").post_whole("not here") is None  # that path posts
    [message] = slack.messages
    assert ts == message.ts and message.thread_ts == "1.000001" and native.posted
    assert message.markdown and message.text == "**Done** " + harmless("<!here>", finished=True)
    assert methods(slack) == ["chat.postMessage"]
    assert message.blocks is not None
    assert [b["type"] for b in message.blocks] == ["markdown", "context_actions"]
    fallback = slack.calls_to("chat.postMessage")[0].args["text"]
    assert "<!here>" not in fallback  # mrkdwn, escaped: the notification's text

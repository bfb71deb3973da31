"""The fake Slack's streaming and assistant methods check their arguments as Slack documents
(docs.slack.dev/reference/methods/chat.startStream and the others; shapes noted in the fake)."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.fake import MAX_MARKDOWN, FakeSlack


async def error(call: object) -> str:
    with pytest.raises(SlackApiError) as raised:
        await call  # type: ignore[misc]
    return str(raised.value.response["error"])


async def test_the_streaming_methods_refuse_what_slack_refuses(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    # Outside DMs the recipient is required; a stream is a reply in a thread.
    start = client.chat_startStream(channel="C0GENERAL", thread_ts="1.1", markdown_text="hi")
    assert await error(start) == "missing_recipient_user_id"
    assert await error(client.chat_startStream(channel="D0ALICE", thread_ts="")) == (
        "invalid_arguments"
    )
    too_long = "x" * (MAX_MARKDOWN + 1)
    assert (
        await error(
            client.chat_startStream(channel="D0ALICE", thread_ts="1.1", markdown_text=too_long)
        )
        == "msg_too_long"
    )
    started = await client.chat_startStream(
        channel="C0GENERAL", thread_ts="1.1", markdown_text="hi",
        recipient_user_id="U0ALICE", recipient_team_id=slack.team_id,
    )  # fmt: skip
    ts = str(started["ts"])
    assert await error(client.chat_appendStream(channel="C0GENERAL", ts=ts)) == "no_text"
    await client.chat_stopStream(channel="C0GENERAL", ts=ts, markdown_text=" there")
    assert slack.messages[0].text == "hi there"
    append = client.chat_appendStream(channel="C0GENERAL", ts=ts, markdown_text="!")
    assert await error(append) == "message_not_in_streaming_state"
    assert await error(client.chat_stopStream(channel="C0GENERAL", ts="9.9")) == (
        "message_not_found"
    )
    slack.refuse_streaming("not_allowed_token_type")
    start = client.chat_startStream(channel="D0ALICE", thread_ts="1.1", markdown_text="hi")
    assert await error(start) == "not_allowed_token_type"


async def test_the_assistant_methods_check_their_thread_and_arguments(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    status = client.assistant_threads_setStatus(channel_id="D0ALICE", thread_ts="", status="x")
    assert await error(status) == "invalid_thread_ts"
    many = client.assistant_threads_setStatus(
        channel_id="D0ALICE", thread_ts="1.1", status="x", loading_messages=["…"] * 11
    )
    assert await error(many) == "invalid_arguments"
    prompts = client.assistant_threads_setSuggestedPrompts(
        channel_id="D0ALICE", thread_ts="1.1", prompts=[{"title": "no message"}]
    )
    assert await error(prompts) == "invalid_arguments"
    await client.assistant_threads_setTitle(channel_id="D0ALICE", thread_ts="1.1", title="T")
    assert slack.thread("D0ALICE", "1.1").title == "T"


async def test_typed_clicks_find_the_newest_buttons(slack: FakeSlack) -> None:
    from adapters.slack.blocks import feedback_blocks, stop_blocks
    from adapters.slack.fake import Ephemeral, Message, _click_newest

    assert _click_newest(slack, "good") is None
    slack.messages.append(Message("C0GENERAL", "1.1", "old", blocks=feedback_blocks(1)))
    slack.messages.append(Message("C0GENERAL", "1.2", "new", blocks=feedback_blocks(2)))
    slack.ephemeral.append(Ephemeral("C0GENERAL", "U0ALICE", "stop?", "api", "1.0", stop_blocks(3)))
    good, bad, stop = (_click_newest(slack, w) for w in ("good", "bad", "stop"))
    assert good is not None and good["actions"][0]["value"] == "positive:2"
    assert bad is not None and bad["actions"][0]["value"] == "negative:2"
    assert stop is not None and stop["actions"][0] == stop["actions"][0] | {
        "action_id": "tokbot_stop",
        "value": "3",
    }
    assert stop["container"]["is_ephemeral"] is True

"""Socket Mode: the same bot over a WebSocket from `apps.connections.open`, envelopes acked."""

from __future__ import annotations

import asyncio

import aiohttp

from bot.tokmodel.fake import FakeTokModel, Fault
from tests.slack.conftest import CHANNEL, Bot


async def test_connects_and_reports_healthy(socket_bot: Bot) -> None:
    assert [c.authorized for c in socket_bot.slack.calls_to("apps.connections.open")] == [True]
    assert await socket_bot.adapter.healthy()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{socket_bot.web.port}/healthz") as response,
    ):
        assert response.status == 200
        assert (await response.json())["checks"] == {"slack": True}
    # No /slack/events route in Socket Mode.
    async with (
        aiohttp.ClientSession() as session,
        session.post(socket_bot.url, data=b"{}") as response,
    ):
        assert response.status in (404, 405)


async def test_a_slash_command_envelope_is_acked_and_answered(socket_bot: Bot) -> None:
    slack = socket_bot.slack
    payload = slack.command_payload("/ask", "over the socket")
    envelope = await slack.send_envelope("slash_commands", payload)
    await slack.wait_for(lambda: envelope in slack.acks)
    assert slack.acks[envelope]["payload"]["response_type"] == "in_channel"
    [answer] = await socket_bot.replies(1)
    assert "over the socket" in answer


async def test_redelivered_events_are_answered_once(socket_bot: Bot, fake: FakeTokModel) -> None:
    slack = socket_bot.slack
    body = slack.event_body(slack.message_event("once only", mention=True))
    envelopes = [await slack.send_envelope("events_api", body, retry_attempt=n) for n in range(3)]
    await slack.wait_for(lambda: all(e in slack.acks for e in envelopes))
    [answer] = await socket_bot.replies(1, thread_ts=body["event"]["ts"])
    assert "once only" in answer
    await asyncio.sleep(0.3)
    assert len(slack.messages) == 1


async def test_out_of_credits_over_the_socket(socket_bot: Bot, fake: FakeTokModel) -> None:
    fake.fail(Fault(status=403, path="/v1/chat/completions"))
    payload = socket_bot.slack.command_payload("/ask", "any credits?")
    await socket_bot.slack.send_envelope("slash_commands", payload)
    [answer] = await socket_bot.replies(1, channel=CHANNEL)
    assert "out of credits" in answer


async def test_reconnects_when_slack_asks(socket_bot: Bot) -> None:
    slack = socket_bot.slack
    await slack.ask_to_reconnect()
    await slack.wait_for(lambda: len(slack.calls_to("apps.connections.open")) == 2)
    await slack.wait_for(lambda: slack.connects == 2 and slack.connections == 1)
    await slack.send_envelope("slash_commands", slack.command_payload("/help"))
    assert "/ask" in (await socket_bot.private_replies(1))[0]


async def test_a_feedback_click_over_the_socket_is_acked_and_thanked(socket_bot: Bot) -> None:
    slack = socket_bot.slack
    event = slack.message_event("hi", mention=True)
    await slack.send_envelope("events_api", slack.event_body(event))
    await socket_bot.replies(1)
    [message] = slack.messages
    assert message.blocks is not None
    value = message.blocks[-1]["elements"][0]["negative_button"]["value"]
    click = slack.block_action(
        "tokbot_feedback", value, message=message, action_type="feedback_buttons"
    )
    envelope = await slack.send_envelope("interactive", click)
    await slack.wait_for(lambda: envelope in slack.acks)
    [thanks] = await socket_bot.private_replies(1)  # (an answer this short gets no Stop offer)
    assert "wasn't good enough" in thanks

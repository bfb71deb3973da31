"""Answer buttons on Slack, clicked as Slack sends them (signed `block_actions` to
/slack/events): 👍/👎 under a finished answer, Stop while one streams."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from adapters.slack.fake import FakeSlack, Message
from adapters.slack.translate import conversation_key
from bot.core import NOT_YOUR_ANSWER, STOPPED, STOPPING
from bot.domain import TurnRole, TurnStatus
from bot.settings import Settings
from bot.tokmodel.fake import FakeTokModel
from tests.slack.conftest import ALICE, BOB, CHANNEL, Bot, running

LONG = " ".join(f"word{i}" for i in range(400))


def feedback_element(message: Message) -> dict[str, object]:
    assert message.blocks is not None
    [block] = [b for b in message.blocks if b["type"] == "context_actions"]
    element: dict[str, object] = block["elements"][0]
    return element


async def test_a_thumbs_up_is_stored_acknowledged_privately_and_counted(bot: Bot) -> None:
    event = bot.slack.message_event("rate me", mention=True)
    await bot.event(event)
    await bot.replies(1, thread_ts=event["ts"])
    [message] = bot.slack.messages
    element = feedback_element(message)
    assert element["type"] == "feedback_buttons" and element["action_id"] == "tokbot_feedback"
    value = element["positive_button"]["value"]  # type: ignore[index]
    click = bot.slack.block_action(
        "tokbot_feedback", value, user=BOB, message=message, action_type="feedback_buttons"
    )
    status, _ = await bot.slack.post_action(bot.url, click)
    assert status == 200
    [thanks] = await bot.private_replies(1, user=BOB)
    assert "Thanks" in thanks and bot.slack.responses[-1]["replace_original"] is False
    [channel] = await bot.core.store.feedback_by_channel(platform="slack")
    assert (channel.channel, channel.answers, channel.positive, channel.negative) == (
        CHANNEL, 1, 1, 0,
    )  # fmt: skip
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{bot.web.port}/metrics") as response:
            page = await response.text()
    assert 'tokbot_feedback_total{platform="slack",value="positive"} 1.0' in page
    # A forged click (bad signature) changes nothing.
    status, _ = await bot.slack.post_action(bot.url, click, secret="wrong")
    assert status == 401


async def test_the_asker_stops_a_native_stream_mid_answer(bot: Bot, fake: FakeTokModel) -> None:
    fake.set_reply(LONG)
    fake.chunk_delay = 0.02  # ~4 s for the whole answer
    event = bot.slack.message_event("talk a lot", mention=True)
    await bot.event(event)
    await bot.slack.wait_for(lambda: len(bot.slack.ephemeral) == 1)
    [offer] = bot.slack.ephemeral
    assert offer.blocks is not None
    [stop] = [e for b in offer.blocks if b["type"] == "actions" for e in b["elements"]]
    # Someone else can't stop it.
    await bot.slack.post_action(
        bot.url, bot.slack.block_action("tokbot_stop", stop["value"], user=BOB, message=offer)
    )
    await bot.slack.wait_for(lambda: NOT_YOUR_ANSWER in bot.slack.private_texts(BOB))
    await bot.slack.post_action(
        bot.url, bot.slack.block_action("tokbot_stop", stop["value"], user=ALICE, message=offer)
    )
    await bot.slack.wait_for(lambda: bot.slack.messages and not bot.slack.messages[0].streaming)
    await bot.slack.wait_for(lambda: STOPPED in bot.slack.private_texts(ALICE))
    assert bot.slack.responses[-1]["replace_original"] is True  # the offer becomes the ack
    await bot.replies(1, thread_ts=event["ts"])  # and nothing is left running
    [message] = bot.slack.messages
    assert "word399" not in message.text  # stopped half-way
    key = conversation_key(bot.slack.team_id, CHANNEL, event["ts"])
    turns = await bot.core.store.history(key)
    [answer] = [t for t in turns if t.role is TurnRole.ASSISTANT]
    assert answer.status is TurnStatus.STOPPED and answer.content in message.text


async def test_the_stop_button_on_the_update_path_is_in_the_message(
    slack_settings: Callable[..., Settings], slack: FakeSlack, fake: FakeTokModel
) -> None:
    fake.set_reply(LONG)
    fake.chunk_delay = 0.02
    settings = slack_settings(TOKBOT_SLACK_STREAMING="update")
    async with running(settings, slack, fake) as bot:
        event = slack.message_event("talk a lot", mention=True)
        await bot.event(event)

        def stop_button() -> dict[str, str] | None:
            blocks = slack.messages[0].blocks if slack.messages else None
            found = [e for b in blocks or () if b["type"] == "actions" for e in b["elements"]]
            return found[0] if found else None

        await slack.wait_for(lambda: stop_button() is not None)
        button = stop_button()
        assert button is not None and button["action_id"] == "tokbot_stop"
        click = slack.block_action("tokbot_stop", button["value"], message=slack.messages[0])
        await slack.post_action(bot.url, click)
        # (A click before the answer's stream is registered is stopped through the database:
        # "Stopping…", then stopped within a second.)
        await slack.wait_for(lambda: bool({STOPPED, STOPPING} & set(slack.private_texts(ALICE))))
        await bot.replies(1, thread_ts=event["ts"])
        [message] = slack.messages
        assert "word399" not in message.text
        assert message.blocks is not None
        assert not any(b["type"] == "actions" for b in message.blocks)  # Stop is gone

"""What the channel sees when TokModel fails, and what happens to unsigned requests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest

from adapters.slack.fake import FakeSlack
from bot.settings import Settings, SettingsError
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.slack.conftest import Bot, running

CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(status=401, path=CHAT), "rejected this bot's API key"),
        (Fault(status=403, path=CHAT), "out of credits"),
        (Fault(status=429, retry_after=30, path=CHAT), "try again in about 30 seconds"),
        (Fault(status=500, path=CHAT), "TokModel failed (error 500)"),
        (Fault(delay=3, path=CHAT), "took too long"),
        (Fault(cut_after=3, path=CHAT), "broke off half-way"),
    ],
    ids=["401", "403", "429", "500", "timeout", "stream-cut"],
)
async def test_tokmodel_failures_become_friendly_messages(
    slack_settings: Callable[..., Settings],
    slack: FakeSlack,
    fake: FakeTokModel,
    fault: Fault,
    expected: str,
) -> None:
    settings = slack_settings(TOKBOT_TOKMODEL_MAX_RETRIES="0", TOKBOT_TOKMODEL_TIMEOUT="0.5")
    async with running(settings, slack, fake) as bot:
        fake.fail(fault)
        await bot.command("/ask", "are you there?")
        [answer] = await bot.replies(1)
    assert expected in answer
    assert "Traceback" not in answer and "_thinking…_" not in answer
    if fault.cut_after:
        assert "(stand-in) You" in answer and "answer cut off" in answer  # partial kept


async def test_out_of_credits_for_a_mention_and_an_image(bot: Bot, fake: FakeTokModel) -> None:
    fake.fail(Fault(status=403, times=-1))
    mention = bot.slack.message_event("hello?", mention=True)
    await bot.event(mention)
    [answer] = await bot.replies(1, thread_ts=mention["ts"])
    assert "out of credits" in answer
    await bot.command("/imagine", "a cat")
    assert "out of credits" in (await bot.replies(2))[-1]
    assert bot.slack.uploads == []


async def _no_effect(bot: Bot, fake: FakeTokModel) -> None:
    await asyncio.sleep(0.3)
    assert bot.slack.messages == [] and fake.requests == []
    assert bot.slack.calls_to("chat.postMessage") == []


async def test_a_bad_signature_is_rejected(bot: Bot, fake: FakeTokModel) -> None:
    payload = bot.slack.command_payload("/ask", "sneaky")
    status, _ = await bot.slack.post_command(bot.url, payload, secret="not-the-secret")
    assert status == 401
    body = bot.slack.event_body(bot.slack.message_event("sneaky", mention=True))
    status, _ = await bot.slack.post_event(bot.url, body, secret="not-the-secret")
    assert status == 401
    await _no_effect(bot, fake)


async def test_a_stale_timestamp_is_rejected(bot: Bot, fake: FakeTokModel) -> None:
    payload = bot.slack.command_payload("/ask", "replayed")
    stale = int(time.time()) - 10 * 60
    status, _ = await bot.slack.post_command(bot.url, payload, timestamp=stale)
    assert status == 401
    await _no_effect(bot, fake)


async def test_url_verification_is_answered(bot: Bot) -> None:
    body = {"token": "x", "challenge": "c-123", "type": "url_verification"}
    status, text = await bot.slack.post_event(bot.url, body)
    assert status == 200 and json.loads(text)["challenge"] == "c-123"


async def test_a_rate_limited_update_waits_and_the_answer_still_lands(bot: Bot) -> None:
    """Slack answers 429 + Retry-After past chat.update's limit: the client waits and retries,
    so the final answer shows (not the placeholder, not an apology)."""
    bot.slack.rate_limit("chat.update", times=1, retry_after=1)
    await bot.command("/ask", "busy workspace?")
    await bot.slack.wait_for(
        lambda: any("You said" in t for t in bot.slack.texts()) and bot.adapter.bot.busy == 0,
        timeout=10,
    )
    [answer] = bot.slack.texts()
    assert "You said: «alice: busy workspace?»" in answer
    updates = bot.slack.calls_to("chat.update")
    assert len(updates) >= 2 and updates[0].args["ts"] == updates[1].args["ts"]


async def test_a_proxy_error_page_from_the_web_api_is_logged_not_raised(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy's plain-text 503 (no `error` code to read) while reading a thread: the answer
    goes on without the thread, and the log line says what came back."""
    bot.slack.fail_raw("conversations.replies", status=503)
    mention = bot.slack.message_event("hello?", mention=True, thread_ts="1600000000.000001")
    await bot.event(mention)
    [answer] = await bot.replies(1, thread_ts="1600000000.000001")
    assert "I can see 0 earlier message(s)" in answer
    assert "conversations.replies: HTTP 503, not a Slack answer" in caplog.text


async def test_a_proxy_error_page_at_start_up_is_not_called_a_wrong_token(
    slack_settings: Callable[..., Settings], slack: FakeSlack, fake: FakeTokModel
) -> None:
    slack.fail_raw("auth.test", status=502, body="Bad Gateway")
    with pytest.raises(SettingsError, match="answered HTTP 502 without Slack's JSON"):
        async with running(slack_settings(), slack, fake):
            pass

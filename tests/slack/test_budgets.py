"""Budgets and admin alerts on Slack, through the real slack-bolt and the fake Slack: `/budget`
with a mention (escaped, as manifest.yml asks for), a refusal that sends nothing to TokModel,
alerts by DM (conversations.open + chat.postMessage) once per hour, and /healthz."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from adapters.slack.fake import FakeSlack
from bot.settings import Settings
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.slack.conftest import ADA, ALICE, BOB, CHANNEL, Bot, running

CHAT = "/v1/chat/completions"


def chats(fake: FakeTokModel) -> int:
    return sum(1 for r in fake.requests if r.path == CHAT)


async def health(bot: Bot) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{bot.web.port}/healthz") as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_a_budget_set_with_a_mention_refuses_and_alerts_the_admins(
    bot: Bot, fake: FakeTokModel
) -> None:
    await bot.command("/budget", f"user <@{ALICE}|alice> 10/day", user_id=ALICE)
    assert "Only admins" in (await bot.private_replies(1))[-1]
    await bot.command("/budget", f"user <@{ALICE}|alice> 10/day", user_id=ADA, user_name="ada")
    said = (await bot.private_replies(1, user=ADA))[-1]
    assert f"user {ALICE}'s budget is now 10 tokens a day" in said.replace("User", "user")

    await bot.command("/ask", "hello")  # allowed (nothing spent yet), and passes the budget
    [answer] = await bot.replies(1)
    assert "You said" in answer
    # Past 80 %: Bob (TOKBOT_ADMIN_USER_IDS) and Ada (a workspace admin who used the bot) hear
    # about it by DM; Alice (no admin) does not.
    await bot.slack.wait_for(
        lambda: bool(bot.slack.direct_messages(BOB)) and bool(bot.slack.direct_messages(ADA))
    )
    assert f"user {ALICE}'s daily budget" in bot.slack.direct_messages(BOB)[0]
    assert ALICE not in bot.slack.dm_opened

    sent = chats(fake)
    await bot.command("/ask", "and again")
    refusal = (await bot.private_replies(2))[-1]
    assert "Not sent: this would go past your daily budget of 10 tokens a day:" in refusal
    assert "nothing left" in refusal and "resets at 00:00 UTC" in refusal
    assert chats(fake) == sent  # nothing went to TokModel
    assert bot.slack.texts(CHANNEL) == [answer]  # the refusal was private

    await bot.command("/budget")
    mine = (await bot.private_replies(3))[-1]
    assert "• you: 10 tokens a day:" in mine and "this channel: no budget" in mine
    await bot.command("/budget", f"user <@{ALICE}> off", user_id=BOB)
    assert f"Removed user {ALICE}'s budget" in (await bot.private_replies(1, user=BOB))[-1]
    await bot.command("/ask", "now?")
    assert len(await bot.replies(2)) == 2


async def test_out_of_credits_alerts_once_and_degrades_health_until_a_success(
    bot: Bot, fake: FakeTokModel
) -> None:
    assert (await health(bot))["status"] == "ok"
    fake.fail(Fault(status=403, times=2, path=CHAT))
    # Ada mentions the bot: her users.info says she is a workspace admin, so alerts reach her.
    await bot.event(bot.slack.message_event("first", user=ADA, mention=True))
    await bot.slack.wait_for(lambda: bool(bot.slack.direct_messages(BOB)))
    assert "out of credits (403)" in bot.slack.direct_messages(BOB)[0]
    body = await health(bot)
    assert body["status"] == "degraded"
    assert body["reasons"] == {"tokmodel": "the TokModel account is out of credits (403)"}
    await bot.command("/ask", "second")
    assert "out of credits" in (await bot.replies(2))[-1]  # the second 403
    await bot.command("/ask", "third")  # credits are back
    assert "You said" in (await bot.replies(3))[-1]
    assert (await health(bot))["status"] == "ok"
    # One alert for the two 403s, to each admin (DMs opened as Slack documents).
    assert len(bot.slack.direct_messages(BOB)) == len(bot.slack.direct_messages(ADA)) == 1
    assert {c.args["users"] for c in bot.slack.calls_to("conversations.open")} == {ADA, BOB}


async def test_alerts_go_to_the_alert_channel_when_one_is_set(
    slack_settings: Callable[..., Settings], slack: FakeSlack, fake: FakeTokModel
) -> None:
    settings = slack_settings(TOKBOT_ALERT_CHANNEL="slack:C0ALERTS,discord:123")
    async with running(settings, slack, fake) as bot:
        fake.fail(Fault(status=401, times=1, path=CHAT))
        await bot.command("/ask", "hello")
        await slack.wait_for(lambda: bool(slack.texts("C0ALERTS")))
        assert "rejected the API key (401)" in slack.texts("C0ALERTS")[0]
        assert slack.calls_to("conversations.open") == []


async def test_two_replicas_share_budgets_and_send_each_alert_once(
    slack_settings: Callable[..., Settings], slack: FakeSlack, fake: FakeTokModel
) -> None:
    """Two Cores (each with its own store connections and Slack app) on one database, as two
    replicas behind a load balancer: what one counts, the other refuses on."""
    settings = slack_settings()
    async with running(settings, slack, fake) as one, running(settings, slack, fake) as two:
        await one.command("/budget", f"user <@{ALICE}> 10/day", user_id=BOB)
        await one.private_replies(1, user=BOB)
        await one.command("/ask", "hello")  # counted by replica one, past the budget
        await one.replies(1)
        await slack.wait_for(lambda: bool(slack.direct_messages(BOB)))  # the 80 % alert
        sent = chats(fake)
        await two.command("/ask", "more?")
        assert "Not sent" in (await two.private_replies(1))[-1]
        assert chats(fake) == sent
        await two.command("/budget", "channel 5M/month", user_id=BOB)
        await two.private_replies(2, user=BOB)
        await one.command("/budget")
        assert "this channel: 5M tokens a month" in (await one.private_replies(2))[-1]

        # A 403 on each replica at once: the admins hear about it once.
        fake.fail(Fault(status=403, times=2, path=CHAT))
        await asyncio.gather(
            one.command("/ask", "x", user_id=BOB), two.command("/ask", "y", user_id=BOB)
        )
        await slack.wait_for(lambda: len(slack.direct_messages(BOB)) == 2)
        await one.replies(3)
        await asyncio.gather(one.core.alerts.close(), two.core.alerts.close())
        assert "out of credits" in slack.direct_messages(BOB)[1]
        assert len(slack.direct_messages(BOB)) == 2

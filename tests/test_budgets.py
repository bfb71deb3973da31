"""Budgets: parsing limits, periods, the store's budget rows and daily counters, alert claims,
and the core refusing a request past a budget before TokModel is asked (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from bot.alerts import Alerts
from bot.budgets import (
    BudgetExceeded,
    Budgets,
    Limit,
    describe_reset,
    format_tokens,
    image_tokens,
    parse_limit,
    period_bounds,
)
from bot.core import Core
from bot.domain import Author, ConversationKey
from bot.errors import UserError
from bot.settings import load_settings
from bot.store import Store
from bot.store.budgets import day_number
from bot.tokmodel.fake import FakeTokModel
from bot.tokmodel.types import Usage
from tests.platform import ADMIN, ALICE, KEY, RecordingReplier, message


def epoch(*parts: int) -> float:
    return dt.datetime(*parts, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("200k/day", Limit(200_000, "day")),
        ("5M/month", Limit(5_000_000, "month")),
        ("1.5m / month", Limit(1_500_000, "month")),
        ("150,000 per day", Limit(150_000, "day")),
        ("20000 tokens a day", Limit(20_000, "day")),
        ("3K daily", Limit(3_000, "day")),
        ("off", None),
        (" OFF ", None),
    ],
)
def test_parse_limit(text: str, limit: Limit | None) -> None:
    assert parse_limit(text) == limit


@pytest.mark.parametrize("text", ["200k", "lots/day", "5M/week", "0.0001/day", "-5/day", ""])
def test_parse_limit_refuses_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(UserError, match="200k/day"):
        parse_limit(text)


def test_format_tokens_and_image_estimate() -> None:
    assert [format_tokens(n) for n in (200_000, 5_000_000, 1_500_000, 1234, 999)] == [
        "200k",
        "5M",
        "1.5M",
        "1,234",
        "999",
    ]
    assert [image_tokens(s) for s in ("1024x1024", "256x256", "1792x1024", "bad")] == [
        4000,
        250,
        7000,
        4000,
    ]


def test_alert_channels_per_platform() -> None:
    settings = load_settings({"TOKBOT_ALERT_CHANNEL": "slack:C0A, discord:123, C0B, 456, slack:"})
    assert settings.alert_channels("slack") == ["C0A", "C0B"]
    assert settings.alert_channels("discord") == ["123", "456"]
    assert load_settings({}).alert_channels("slack") == []


def test_period_bounds_in_utc() -> None:
    now = epoch(2026, 12, 31, 22, 30)
    first_day, resets = period_bounds("day", now)
    assert first_day == day_number(now) and resets == epoch(2027, 1, 1)
    first_day, resets = period_bounds("month", now)
    assert first_day == day_number(epoch(2026, 12, 1)) and resets == epoch(2027, 1, 1)
    assert period_bounds("month", epoch(2026, 2, 10))[1] == epoch(2026, 3, 1)
    assert describe_reset(epoch(2027, 1, 1), now) == "00:00 UTC (in 1 h 30 min)"
    assert describe_reset(epoch(2027, 1, 1), epoch(2026, 12, 20)) == (
        "00:00 UTC on 1 Jan (in 12 days)"
    )


async def test_budget_rows_set_replace_list_remove(store: Store) -> None:
    budgets = store.budgets
    await budgets.set_budget("slack", "T1", "user", "U1", tokens=100, period="day", updated_by="A")
    await budgets.set_budget("slack", "T1", "user", "U1", tokens=5, period="month", updated_by="B")
    await budgets.set_budget("slack", "T1", "default", "x", tokens=50, period="day", updated_by="A")
    await budgets.set_budget("slack", "T2", "channel", "C9", tokens=7, period="day", updated_by="A")
    listed = await budgets.list_budgets("slack", "T1")
    assert [(b.scope, b.subject, b.tokens, b.period, b.updated_by) for b in listed] == [
        ("default", "", 50, "day", "A"),
        ("user", "U1", 5, "month", "B"),
    ]
    assert len(await budgets.list_budgets()) == 3
    applying = await budgets.applying("slack", "T1", user_id="U1", channel="C1")
    assert {b.scope for b in applying} == {"user", "default"}
    assert await budgets.remove_budget("slack", "T1", "user", "U1")
    assert not await budgets.remove_budget("slack", "T1", "user", "U1")
    with pytest.raises(ValueError):
        await budgets.set_budget("slack", "T1", "team", "x", tokens=1, period="day", updated_by="")


async def test_usage_is_counted_per_day_for_user_and_channel(store: Store) -> None:
    key = ConversationKey("slack", "T1", "C1", "thread-1")
    await store.record_usage(key, user_id="U1", command="tts", model="m", usage=Usage(0, 7, 7))
    await store.record_usage(key, user_id="U1", command="ask", model="m", usage=Usage(3, 4, 10))
    other = ConversationKey("slack", "T1", "C2")
    await store.record_usage(other, user_id="U1", command="ask", model="m", usage=None)
    today = day_number(time.time())
    spent = store.budgets.spent
    assert await spent("slack", "T1", "user", "U1", first_day=today) == 17
    assert await spent("slack", "T1", "channel", "C1", first_day=today) == 17
    assert await spent("slack", "T1", "channel", "C2", first_day=today) == 0
    assert await spent("slack", "T1", "user", "U1", first_day=today + 1) == 0
    daily = await store.budgets.daily_usage("slack", "T1", since_day=today - 30, scope="user")
    assert [(d.subject, d.day, d.requests, d.tokens) for d in daily] == [("U1", today, 3, 17)]
    everywhere = await store.budgets.daily_usage(since_day=today, scope="channel")
    assert [(d.platform, d.workspace, d.subject, d.tokens) for d in everywhere] == [
        ("slack", "T1", "C1", 17),
        ("slack", "T1", "C2", 0),
    ]


async def test_an_alert_is_claimed_once_per_quiet_period(store: Store) -> None:
    claim = store.budgets.claim_alert
    assert await claim("tokmodel-403", quiet_seconds=3600)
    assert not await claim("tokmodel-403", quiet_seconds=3600)
    assert await claim("tokmodel-401", quiet_seconds=3600)
    assert await claim("tokmodel-403", quiet_seconds=0)  # the hour is over
    await store.budgets.forget_alert("tokmodel-401")
    assert await claim("tokmodel-401", quiet_seconds=3600)


async def test_statuses_and_check(store: Store) -> None:
    budgets = Budgets(store)
    key = ConversationKey("slack", "T1", "C1")
    assert (await budgets.statuses(key, "U1")).all() == []
    assert await budgets.check(key, "U1", estimate=5) is False  # none: no alert check after
    await budgets.set("slack", "T1", "default", "", Limit(100, "day"), by="A")
    await budgets.set("slack", "T1", "channel", "C1", Limit(1000, "month"), by="A")
    await store.record_usage(key, user_id="U1", command="ask", model=None, usage=Usage(0, 0, 95))
    statuses = await budgets.statuses(key, "U1")
    assert statuses.person is not None and statuses.channel is not None
    assert (statuses.person.spent, statuses.person.left) == (95, 5)
    assert (statuses.channel.spent, statuses.channel.left) == (95, 905)
    assert await budgets.check(key, "U1", estimate=5) is True
    with pytest.raises(BudgetExceeded) as refused:
        await budgets.check(key, "U1", estimate=6)
    said = str(refused.value)
    assert "past your daily budget of 100 tokens a day (the default for everyone): " in said
    assert "5 tokens left" in str(refused.value) and "00:00 UTC" in str(refused.value)
    await budgets.check(key, "U2", estimate=100)  # the default counts each person apart
    await budgets.set("slack", "T1", "user", "U2", Limit(1_000_000, "day"), by="A")
    await budgets.set("slack", "T1", "channel", "C1", Limit(150, "month"), by="A")
    with pytest.raises(BudgetExceeded, match="this channel's monthly budget"):
        await budgets.check(key, "U2", estimate=100)


async def test_a_request_past_a_budget_is_refused_privately_and_not_sent(
    core: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    await core.budgets.set(KEY.platform, KEY.workspace, "user", ALICE.id, Limit(30, "day"), by="A")
    await core.handle(message("ask", "hi"), replier)
    spent = (await core.budgets.statuses(KEY, ALICE.id)).person
    assert spent is not None and spent.spent > 0
    sent, stored = len(fake.requests), len(await core.store.history(KEY, 50))
    # (/ask reads the budgets with its context, in one trip: refused before anything is stored)
    await core.handle(message("ask", "x" * 200), replier)
    assert len(fake.requests) == sent
    assert len(await core.store.history(KEY, 50)) == stored
    assert replier.order[-1] in replier.private
    assert "Not sent: this would go past your daily budget" in replier.last
    assert "tokens left" in replier.last or "nothing left" in replier.last


async def test_budget_command_for_admins_and_everyone(
    core: Core, replier: RecordingReplier
) -> None:
    async def say(text: str, author: Author = ADMIN) -> str:
        await core.handle(message("budget", text, author=author), replier)
        assert replier.order[-1] in replier.private  # every /budget reply is private
        return replier.last

    assert "you: no budget" in await say("", ALICE)
    assert "Only admins" in await say("channel 5M/month", ALICE)
    assert "This channel's budget is now 5M tokens a month" in await say("channel 5M/month")
    assert "The default budget is now 100k tokens a day" in await say("default 100k/day")
    assert "User 123's budget is now 1k tokens a day" in await say("user <@!123> 1k/day")
    assert "User U9's budget is now 2k tokens a day" in await say("user <@U9|bob> 2000/day")
    listed = await say("list")
    assert "• the default: 100k tokens a day per person" in listed
    assert "• user 123's: 1k tokens a day: 0 spent, 1,000 left" in listed
    shown = await say("", ALICE)
    assert "you (the default): 100k tokens a day: 0 spent" in shown
    assert "this channel: 5M tokens a month: 0 spent" in shown
    assert "user 123 (the default)" not in await say("user 123")
    assert "Removed user 123's budget" in await say("user 123 off")
    assert "had no budget" in await say("user 123 off")
    assert "I got a name, not an id" in await say("user @bob 1k/day")
    assert "I can't read `lots` as a budget" in await say("channel lots")
    assert "I don't know `/budget week`" in await say("week")


async def test_media_without_reported_usage_counts_the_documented_estimates(
    core: Core, replier: RecordingReplier
) -> None:
    await core.handle(message("imagine", "--size 256x256 a lighthouse"), replier)
    await core.handle(message("tts", "x" * 400), replier)
    spent = await core.store.budgets.spent(
        KEY.platform, KEY.workspace, "user", ALICE.id, first_day=day_number(time.time())
    )
    assert spent == image_tokens("256x256") + 101  # 250, and 400 characters / 4 + 1


async def test_admins_seen_are_shared_through_the_database(store: Store) -> None:
    one, two = Alerts(store), Alerts(store)
    one.saw_admin("slack", "T1", "U0ADA")
    one.saw_admin("slack", "T1", "U0ADA")  # stored once per process
    await one.close()
    assert await two.admins_seen("slack", "T1") == {"U0ADA"}
    assert await two.admins_seen("slack", "T2") == frozenset()

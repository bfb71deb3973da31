"""The admin page's store queries on real databases: the same rows `/usage` counts, grouped by
day, channel and user; TokModel errors by day and status; the login lock-out's counter."""

from __future__ import annotations

import time

from bot.domain import ConversationKey
from bot.store import Store
from bot.store.activity import DAY
from bot.tokmodel.types import Usage

C1 = ConversationKey("slack", "T1", "C1")
C1_THREAD = ConversationKey("slack", "T1", "C1", "1700000000.0001")
C2 = ConversationKey("discord", "G1", "42")


async def record(store: Store, key: ConversationKey, user: str, tokens: int) -> None:
    usage = Usage(prompt_tokens=tokens - 1, completion_tokens=1, total_tokens=tokens)
    await store.record_usage(key, user_id=user, command="ask", model="m", usage=usage)


async def test_usage_by_channel_and_user_match_usage_summary(store: Store) -> None:
    await record(store, C1, "U1", 10)
    await record(store, C1_THREAD, "U2", 5)
    await record(store, C2, "U1", 100)

    channels = await store.usage_by_channel()
    users = await store.usage_by_user()

    assert [(c.platform, c.who, c.requests, c.tokens) for c in channels] == [
        ("discord", "42", 1, 100),
        ("slack", "C1", 2, 15),
    ]
    assert [(u.platform, u.who, u.requests, u.tokens) for u in users] == [
        ("discord", "U1", 1, 100),
        ("slack", "U1", 1, 10),
        ("slack", "U2", 1, 5),
    ]
    summary = await store.usage_summary(C1, "U1")  # what /usage says
    assert (summary.channel_requests, summary.channel_tokens) == (2, 15)
    assert (summary.user_requests, summary.user_tokens) == (1, 10)


async def test_daily_activity_fills_every_day_and_counts_errors(store: Store) -> None:
    await record(store, C1, "U1", 7)
    await store.record_tokmodel_error(C1, user_id="U1", command="ask", status=403)
    await store.record_tokmodel_error(C2, user_id="U9", command="imagine", status=403)
    await store.record_tokmodel_error(C2, user_id="U9", command="ask", status=None)

    days = await store.daily_activity(30)

    assert len(days) == 30
    assert days[-1].day == int(time.time() // DAY)
    assert (days[-1].requests, days[-1].tokens, days[-1].errors) == (1, 7, 3)
    assert all((d.requests, d.tokens, d.errors) == (0, 0, 0) for d in days[:-1])
    assert await store.errors_by_status() == [(403, 2), (0, 1)]
    assert await store.errors_by_status(since=time.time() + 60) == []


async def test_channel_overviews_join_settings_conversations_and_usage(store: Store) -> None:
    await store.update_channel_settings(C1, updated_by="U1", model="openai/gpt-4o")
    await record(store, C2, "U1", 3)
    quiet = ConversationKey("slack", "T1", "C3")
    await store.forget(quiet)  # no conversation row yet: forgetting creates none
    from bot.domain import Author, TurnKind, TurnRole

    await store.add_turn(
        quiet, role=TurnRole.USER, kind=TurnKind.TEXT, content="hi", author=Author("U1", "a")
    )

    found = {c.key: c for c in await store.channel_overviews()}

    assert set(found) == {C1, C2, quiet}
    assert found[C1].model == "openai/gpt-4o"
    assert (found[C2].requests, found[C2].tokens, found[C2].model) == (1, 3, None)
    assert found[quiet].transcription_mode == "transcribe"


async def test_tenth_failed_login_in_a_row_locks_and_success_resets(store: Store) -> None:
    for _ in range(9):
        assert await store.login_failed("admin", max_failures=10, lockout_seconds=60) == 0.0
    await store.login_succeeded()
    for _ in range(9):
        assert await store.login_failed("admin", max_failures=10, lockout_seconds=60) == 0.0
    until = await store.login_failed("admin", max_failures=10, lockout_seconds=60)
    assert until > time.time() + 50
    assert await store.login_locked_until("admin") == until
    assert await store.login_locked_until("nobody") == 0.0


async def test_ended_sessions_are_kept_until_they_would_have_expired(store: Store) -> None:
    await store.end_session("expired", expires_at=time.time() - 1)
    await store.end_session("recent", expires_at=time.time() + 60)
    await store.end_session("recent", expires_at=time.time() + 60)  # twice: still one
    assert await store.session_ended("recent")
    assert not await store.session_ended("expired")  # forgotten: its cookie has expired
    assert not await store.session_ended("never")

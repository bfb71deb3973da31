"""/summarize: a channel over a span (its threads included) or one thread, from the stored
turns, in parts then together when long; the core end to end and the console as people run it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.core import Core
from bot.domain import BOT_AUTHOR, Author, ConversationKey, TurnKind, TurnRole
from bot.errors import UserError
from bot.handlers.summarize import BAD_SPAN, NOT_IN_THREAD, parse_span
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.store.models import TurnRow
from bot.tokmodel.fake import FakeTokModel
from tests.conftest import API_KEY
from tests.platform import ALICE, KEY, RecordingReplier, message
from tests.test_console_e2e import console

COMPACT = "/v1/responses/compact"
THREAD = ConversationKey(KEY.platform, KEY.workspace, KEY.channel, "t1")
BOB = Author("u-bob", "Bob")


def test_spans() -> None:
    assert parse_span("") == 86400 and parse_span("24h") == 86400
    assert parse_span("7d") == 7 * 86400 and parse_span(" 3D ") == 3 * 86400
    assert parse_span("thread") is None
    for bad in ("3w", "0h", "32d", "yesterday", "24h extra"):
        with pytest.raises(UserError, match="24h"):
            parse_span(bad)


@pytest.fixture
async def small_core(
    make_settings: Callable[..., Settings], fake: FakeTokModel
) -> AsyncIterator[Core]:
    settings = make_settings(TOKBOT_CONTEXT_BUDGET_TOKENS="400")
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as opened:
        yield opened


async def say(core: Core, key: ConversationKey, text: str, author: Author = ALICE) -> int:
    role = TurnRole.ASSISTANT if author is BOT_AUTHOR else TurnRole.USER
    return await core.store.add_turn(
        key, role=role, kind=TurnKind.TEXT, content=text, author=author
    )


async def test_a_channel_span_with_its_threads_in_parts_then_together(
    small_core: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    old = await say(small_core, KEY, "We picked Postgres 16 last week.")
    async with small_core.store.engine.begin() as conn:  # three days ago
        await conn.execute(
            update(TurnRow).where(TurnRow.id == old).values(created_at=time.time() - 3 * 86400)
        )
    await say(small_core, KEY, "The release is on Friday at 15:00.")
    for _ in range(60):  # chatter, longer than one request's budget
        await say(small_core, KEY, "ok, sounds good to me, let us keep going like this.", BOB)
        await say(small_core, KEY, "noted, that works.", BOT_AUTHOR)
    await say(small_core, THREAD, "the rollback plan is owned by Carol.")

    await small_core.handle(message("summarize"), replier)
    day = replier.last
    assert day.startswith("📝 **Summary of this channel over the last 24h** (122 messages)")
    assert "Friday at 15:00" in day and "the rollback plan is owned by Carol" in day
    assert "Postgres" not in day and "sounds good" not in day
    compacts = [r for r in fake.requests if r.path == COMPACT]
    assert len(compacts) >= 3  # parts, then their summaries together
    assert all(len(r.json["input"]) // 4 < 400 for r in compacts if r.json)

    await small_core.handle(message("summarize", "7d"), replier)
    assert "Postgres 16" in replier.last and "(123 messages)" in replier.last
    usage = await small_core.store.usage_summary(KEY, ALICE.id)
    assert usage.user_requests == 2  # counted for /usage and budgets

    await small_core.handle(message("summarize", "thread", key=THREAD), replier)
    assert "Summary of this thread** (1 message)" in replier.last
    assert "the rollback plan is owned by Carol" in replier.last

    await small_core.handle(message("summarize", "thread"), replier)
    assert replier.last == NOT_IN_THREAD
    await small_core.handle(message("summarize", "3w"), replier)
    assert replier.last == BAD_SPAN
    empty = ConversationKey("test", "w1", "quiet")
    await small_core.handle(message("summarize", key=empty), replier)
    assert "Nothing was said" in replier.last


async def test_summarize_in_the_console(fake: FakeTokModel, tmp_path: Path) -> None:
    script = (
        "/ask The demo is on Monday at 10:00 in room Blue.\n"
        "/summarize\n"
        "/summarize thread\n"
        "/summarize 3w\n"
        "/help\n"
    )
    run = await console(script, tmp_path, fake)
    assert run.code == 0, run.err
    assert "Summary of this channel over the last 24h** (2 messages)" in run.out
    assert "Monday at 10:00 in room Blue" in run.out
    assert NOT_IN_THREAD in run.out and BAD_SPAN in run.out
    assert "/summarize [24h|7d|thread]" in run.out  # in /help
    assert "Traceback" not in run.out + run.err

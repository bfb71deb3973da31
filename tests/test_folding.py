"""Long conversations fold, they don't forget: the core end to end (real store on SQLite and
PostgreSQL, the TokModel stand-in over HTTP), and the summarizer's parts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import pytest

from bot.core import Core
from bot.domain import BOT_AUTHOR, TurnKind, TurnRole
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.store import Store
from bot.summarizer import Summarizer
from bot.tokmodel.client import TokModelClient
from bot.tokmodel.fake import FakeTokModel, Fault, stand_in_summary
from tests.conftest import API_KEY
from tests.platform import ALICE, KEY, RecordingReplier, message

CHAT = "/v1/chat/completions"
COMPACT = "/v1/responses/compact"
FACT = "The deploy window is Tuesday 14:00 UTC, code PELICAN-42."
BUDGET = "800"


@pytest.fixture
async def small_core(
    make_settings: Callable[..., Settings], fake: FakeTokModel
) -> AsyncIterator[Core]:
    # (no retries: a failing summary fails at once)
    settings = make_settings(TOKBOT_CONTEXT_BUDGET_TOKENS=BUDGET, TOKBOT_TOKMODEL_MAX_RETRIES="0")
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as opened:
        yield opened


async def long_conversation(core: Core, turns: int = 300) -> None:
    """`turns` turns stored directly (no round trips); the fact is turn 3, the rest chatter."""
    for i in range(turns):
        if i == 2:
            await core.store.add_turn(
                KEY, role=TurnRole.USER, kind=TurnKind.TEXT, content=FACT, author=ALICE
            )
        elif i % 2 == 0:
            await core.store.add_turn(
                KEY,
                role=TurnRole.USER,
                kind=TurnKind.TEXT,
                content="sounds good, let us keep going with the plan as it is.",
                author=ALICE,
            )
        else:
            await core.store.add_turn(
                KEY,
                role=TurnRole.ASSISTANT,
                kind=TurnKind.TEXT,
                content="noted, that works for me.",
                author=BOT_AUTHOR,
            )


#: How team memory's recalled messages begin (bot.memory.context_note).
RECALL_NOTE = "Earlier messages of this channel that may be relevant"


def last_chat(fake: FakeTokModel) -> list[dict[str, str]]:
    sent = [r.json["messages"] for r in fake.requests if r.path == CHAT and r.json]
    return sent[-1]


async def test_a_fact_from_turn_3_of_300_reaches_the_next_answer(
    small_core: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    await long_conversation(small_core)
    await small_core.handle(message("ask", "when is the deploy window?"), replier)
    # Before folding, the budget holds only the newest turns: turn 3 is out of the history sent
    # (team memory may recall it, in a note of its own: that is recall's way, not folding's).
    history = [m for m in last_chat(fake) if not m["content"].startswith(RECALL_NOTE)]
    assert "PELICAN-42" not in str(history)
    await small_core.folding.drain()  # the fold that answer started, in the background
    summary = await small_core.store.summaries.latest(KEY)
    assert summary is not None and "PELICAN-42" in summary.turn.content
    assert [r.path for r in fake.requests].count(COMPACT) >= 2  # in parts, then together

    await small_core.handle(message("ask", "so when is the deploy window?"), replier)
    sent = last_chat(fake)
    assert "PELICAN-42" in sent[0]["content"]  # the summary, with the persona
    assert sent[-1]["content"] == "Alice: so when is the deploy window?"
    covered = [m for m in sent[1:] if "sounds good" in m["content"]]
    assert len(covered) < 150  # folded turns are not sent again
    assert "(stand-in)" in replier.last  # answered as usual
    # The folding requests count as the bot's usage in the channel.
    usage = await small_core.store.usage_summary(KEY, BOT_AUTHOR.id)
    assert usage.user_requests >= 1 and usage.user_tokens > 0


async def test_a_failing_summary_still_gives_answers_and_is_logged_once(
    small_core: Core,
    fake: FakeTokModel,
    replier: RecordingReplier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await long_conversation(small_core, 120)
    fake.fail(Fault(status=500, path=COMPACT, times=-1))
    with caplog.at_level(logging.DEBUG, logger="bot.folding"):
        for question in ("first question?", "second question?"):
            await small_core.handle(message("ask", question), replier)
            assert f"You said: «Alice: {question}»" in replier.last
            await small_core.folding.drain()
    assert await small_core.store.summaries.latest(KEY) is None
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "could not fold" in warned[0].getMessage()
    # The old behaviour: the newest turns that fit, the oldest dropped.
    assert last_chat(fake)[-1]["content"] == "Alice: second question?"


async def test_without_compact_the_summary_comes_from_chat_once_detected() -> None:
    async with FakeTokModel(api_key=API_KEY, missing_routes=[COMPACT]) as fake:
        async with TokModelClient(fake.url, API_KEY) as client:
            summarizer = Summarizer(client, budget_tokens=400)
            first = await summarizer.summarize(["Alice: hello", FACT], model="openai/gpt-4o")
            assert summarizer.has_compact is False  # asked once, then remembered
            second = await summarizer.summarize(["Bob: again"], model="openai/gpt-4o")
    paths = [r.path for r in fake.requests]
    assert paths == [CHAT, CHAT]  # (the 404 of a missing route is not recorded)
    assert first.text and second.text and first.usage.total_tokens > 0


async def test_compact_answers_plain_text_that_keeps_the_facts(fake: FakeTokModel) -> None:
    async with TokModelClient(fake.url, API_KEY) as client:
        text = await client.compact(
            "Alice: hi there\nBob: the budget is 300 dollars.\nCarol: ok",
            model="openai/gpt-4o",
            instructions="Summarize.",
            max_output_tokens=50,
        )
    assert text == "Bob: the budget is 300 dollars."
    assert fake.requests[-1].json == {
        "model": "openai/gpt-4o",
        "input": "Alice: hi there\nBob: the budget is 300 dollars.\nCarol: ok",
        "instructions": "Summarize.",
        "max_output_tokens": 50,
    }


def test_the_stand_in_summary_keeps_numbers_and_names_within_its_limit() -> None:
    text = "Ann: hi. Ann: we meet Monday. Ann: ok then. Ann: the key is 7."
    assert stand_in_summary(text) == "Ann: we meet Monday. Ann: the key is 7."
    assert stand_in_summary(text, 3) == "Ann: we meet"
    assert stand_in_summary("Ann: ok.") == "Nothing notable was said."


async def test_shutdown_lets_a_fold_in_progress_finish(
    make_settings: Callable[..., Settings], fake: FakeTokModel, replier: RecordingReplier
) -> None:
    settings = make_settings(TOKBOT_CONTEXT_BUDGET_TOKENS=BUDGET)
    fake.fail(Fault(delay=0.2, path=COMPACT, times=-1))  # still folding when the core stops
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        await long_conversation(core, 120)
        await core.handle(message("ask", "anything new?"), replier)
        store = core.store
        assert await store.summaries.latest(KEY) is None
    reopened = await Store.open(settings.database_url)
    try:
        summary = await reopened.summaries.latest(KEY)
    finally:
        await reopened.close()
    assert summary is not None and "PELICAN-42" in summary.turn.content

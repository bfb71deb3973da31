"""Team memory in the core: /memory, observed messages (edits, deletions), /recall, and recall
in answers, on a real database (SQLite and PostgreSQL) and the TokModel stand-in."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from sqlalchemy import text

from bot.core import Core
from bot.domain import BOT_AUTHOR, ConversationKey, TurnKind, TurnRole
from bot.memory import query_words
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.store import Store, memory_pg
from bot.store.memory import ObservedMessage
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.conftest import API_KEY
from tests.platform import ADMIN, ALICE, KEY, RecordingReplier, message

CHAT = "/v1/chat/completions"
DAY = 86400.0
FACT = "We decided the deploy window is Tuesday 14:00 UTC, never on Fridays."


def observed(
    n: int, text: str, *, key: ConversationKey = KEY, when: float = 0.0
) -> ObservedMessage:
    return ObservedMessage(
        key,
        f"msg-{n}",
        "u-bob",
        "Bob",
        text,
        when or 1_764_000_000.0 + n,
        f"https://chat.example/{key.channel}/msg-{n}",
    )


async def fill(core: Core, count: int, *, start: int = 100) -> None:
    for n in range(start, start + count):
        assert await core.memory.observe(observed(n, f"filler {n}: lunch plans and coffee talk"))


def test_query_words_drop_common_words_and_punctuation() -> None:
    assert query_words("What did we decide about the DEPLOY window?!") == [
        "decide",
        "deploy",
        "window",
    ]
    # Query syntax never reaches the engine: only words, each quoted (FTS5) or a lexeme.
    assert query_words('" NEAR(deploy) -- * AND x 42') == ["near", "deploy", "42"]


async def test_store_edits_and_deletions_reach_the_index(store: Store) -> None:
    memory = store.memory
    await memory.set_enabled(KEY, True, by="u-admin")
    assert await memory.enabled_channels() == {KEY}
    await memory.observe(observed(1, "the staging password rotates monthly"))
    await memory.observe(observed(2, "unrelated chatter"))
    other = ConversationKey(KEY.platform, KEY.workspace, "elsewhere")
    await memory.observe(observed(3, "staging lives elsewhere", key=other))
    found = await memory.candidates(KEY, ["staging"], limit=10)
    assert [c.content for c in found] == ["the staging password rotates monthly"]
    assert await memory.edit(KEY, "msg-1", "staging moved to the new cluster")
    assert await memory.candidates(KEY, ["password"], limit=10) == []
    assert [c.content for c in await memory.candidates(KEY, ["cluster"], limit=10)] == [
        "staging moved to the new cluster"
    ]
    assert await memory.delete(KEY, "msg-1")
    assert await memory.candidates(KEY, ["staging", "cluster"], limit=10) == []
    assert await memory.count(KEY) == 1
    assert await memory.forget(KEY) == 1 and await memory.count(KEY) == 0
    assert await memory.count(other) == 1  # another channel's are its own


async def test_a_quiet_channels_recall_never_returns_a_busy_channels_many_matches(
    store: Store,
) -> None:
    memory = store.memory
    busy = ConversationKey(KEY.platform, KEY.workspace, "busy")
    await memory.observe(observed(1, FACT))  # the quiet channel's, older than all of busy's
    await memory.observe_many(
        [observed(n, f"deploy window chatter {n}", key=busy) for n in range(2, 602)]
    )
    found = await memory.candidates(KEY, ["deploy", "window"], limit=5)
    assert [c.content for c in found] == [FACT]
    found = await memory.candidates(busy, ["deploy", "window"], limit=5)
    assert len(found) == 5 and all(c.content.startswith("deploy window") for c in found)


async def test_a_rare_words_old_match_is_not_crowded_out_by_a_common_words_new_ones(
    store: Store,
) -> None:
    memory = store.memory
    await memory.observe(observed(1, FACT))
    await memory.observe_many([observed(n, f"deploy number {n} went fine") for n in range(2, 402)])
    found = await memory.candidates(KEY, ["deploy", "window"], limit=3)
    assert [c.content for c in found][0] == FACT  # both words, the rarer among them
    assert [c.content for c in found][1:] == [
        "deploy number 401 went fine",
        "deploy number 400 went fine",
    ]


async def test_postgres_finds_common_words_among_the_newest_and_rare_ones_in_all_history(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (On SQLite, whose FTS5 lists are per channel, this holds without the split.)
    monkeypatch.setattr(memory_pg, "RARE_MATCHES", 20)
    monkeypatch.setattr(memory_pg, "RECENT_ROWS", 30)
    memory = store.memory
    await memory.observe(observed(1, FACT))
    await memory.observe_many(
        [observed(n, f"deploy number {n} went fine, see w{n % 37}") for n in range(2, 202)]
    )
    if store.engine.dialect.name == "postgresql":  # the statistics autovacuum would gather
        async with store.engine.begin() as conn:
            await conn.execute(text("ANALYZE observed_messages"))
    found = [c.content for c in await memory.candidates(KEY, ["deploy", "window"], limit=3)]
    assert found[0] == FACT  # "window" is rare: found in all of the channel's history
    assert found[1:] == [  # "deploy" is common: the newest
        "deploy number 201 went fine, see w16",
        "deploy number 200 went fine, see w15",
    ]


async def test_sqlite_full_text_indexes_stay_consistent_through_edits_and_deletions(
    store: Store,
) -> None:
    memory = store.memory
    other = ConversationKey(KEY.platform, KEY.workspace, "elsewhere")
    for n, key in enumerate((KEY, other, KEY)):
        await memory.observe(observed(n, f"deploy window note {n}", key=key))
    assert await memory.edit(KEY, "msg-0", "the deploy window moved")
    assert await memory.delete(other, "msg-1")
    thread = ConversationKey(KEY.platform, KEY.workspace, KEY.channel, "t1")
    turn = await store.add_turn(
        thread, role=TurnRole.USER, kind=TurnKind.TEXT, content="deploy at noon", author=ALICE
    )
    await store.update_turn(turn, content="deploy at one")
    found = await memory.candidates(KEY, ["deploy"], limit=5)
    assert sorted(c.content for c in found) == [
        "deploy at one",
        "deploy window note 2",
        "the deploy window moved",
    ]
    if store.engine.dialect.name == "sqlite":  # FTS5 checks its index against the rows
        async with store.engine.begin() as conn:
            for fts in ("observed_fts", "turns_fts"):
                await conn.execute(text(f"INSERT INTO {fts}({fts}) VALUES ('integrity-check')"))


async def test_memory_switch_is_for_admins_and_off_stores_nothing(
    core: Core, replier: RecordingReplier
) -> None:
    await core.handle(message("memory"), replier)
    assert "Team memory is off here: 0 message(s)" in replier.last
    assert not await core.memory.observe(observed(1, "said while memory is off"))
    await core.handle(message("memory", "on"), replier)
    assert "Only admins" in replier.last
    await core.handle(message("memory", "on", author=ADMIN), replier)
    assert "Team memory is on here" in replier.last
    assert await core.memory.observe(observed(2, "said while memory is on"))
    await core.handle(message("memory", "off", author=ADMIN), replier)
    assert not await core.memory.observe(observed(3, "said after it was turned off"))
    await core.handle(message("memory"), replier)
    assert "Team memory is off here: 1 message(s)" in replier.last
    await core.handle(message("memory", "forget", author=ADMIN), replier)
    assert "Forgot 1 remembered message(s)" in replier.last
    await core.handle(message("memory", "maybe", author=ADMIN), replier)
    assert "`/memory on`" in replier.last


async def test_a_fact_from_days_ago_is_recalled_with_its_source_and_deletion_forgets_it(
    core: Core, replier: RecordingReplier, fake: FakeTokModel
) -> None:
    await core.memory.switch(KEY, True, by="u-admin")
    assert await core.memory.observe(observed(1, FACT, when=1_764_000_000.0 - 3 * DAY))
    await fill(core, 300)

    await core.handle(message("recall", "deploy window"), replier)
    assert "Bob, 2025-11-21" in replier.last and FACT in replier.last
    assert "https://chat.example/c1/msg-1" in replier.last

    await core.handle(message("ask", "When is our deploy window?"), replier)
    answer = replier.last
    assert "Sources: Bob, 2025-11-21 ([link](https://chat.example/c1/msg-1))" in answer
    sent = [r.json["messages"] for r in fake.requests if r.path == CHAT and r.json][-1]
    notes = [m["content"] for m in sent if m["role"] == "system"]
    assert any(f"[Bob, 2025-11-21] {FACT}" in n for n in notes)
    assert sent[-1]["content"] == "Alice: When is our deploy window?"  # the question stays last

    assert await core.memory.deleted(KEY, "msg-1")
    await core.handle(message("recall", "deploy window"), replier)
    assert FACT not in replier.last and "Alice" in replier.last  # (only the question asked)
    await core.handle(message("ask", "When is the deploy window again?"), replier)
    sent = [r.json["messages"] for r in fake.requests if r.path == CHAT and r.json][-1]
    assert not any(FACT in m["content"] for m in sent if m["role"] == "system")


async def test_a_failing_rerank_still_recalls_in_the_index_order_and_answers(
    core: Core, replier: RecordingReplier, fake: FakeTokModel, caplog: pytest.LogCaptureFixture
) -> None:
    await core.memory.switch(KEY, True, by="u-admin")
    await core.memory.observe(observed(1, FACT))
    for n in range(2, 10):  # more candidates than are recalled: rerank is asked to pick
        await core.memory.observe(observed(n, f"deploy note {n}: the checklist is in the wiki"))
    await core.handle(message("recall", "deploy window"), replier)
    assert replier.last.splitlines()[1].endswith(FACT)  # the stand-in's rerank put it first
    assert any(r.path == "/v1/rerank" for r in fake.requests)
    fake.fail(Fault(status=500, times=-1, path="/v1/rerank"))
    with caplog.at_level(logging.WARNING, logger="bot.memory"):
        await core.handle(message("ask", "deploy window?"), replier)
        await core.handle(message("recall", "deploy window"), replier)
    assert "You said: «Alice: deploy window?»" in replier.texts[-2]
    assert "Sources: Bob" in replier.texts[-2]
    assert FACT in replier.last
    assert len([r for r in caplog.records if "rerank failed" in r.getMessage()]) == 1


async def test_recall_finds_conversation_turns_without_memory_on(
    core: Core, replier: RecordingReplier
) -> None:
    thread = ConversationKey(KEY.platform, KEY.workspace, KEY.channel, "t1")
    note = "note: the VPN certificate expires in March"
    await core.handle(message("ask", note, key=thread), replier)
    await core.handle(message("recall", "certificate"), replier)
    assert "Alice, " in replier.last and "VPN certificate expires in March" in replier.last
    assert "Team memory is off here" in replier.last
    await core.handle(message("recall"), replier)
    assert "Tell me what to look for" in replier.last
    await core.handle(message("recall", "the of and"), replier)
    assert "too common" in replier.last
    assert ALICE.id  # (asked as Alice throughout)


async def test_turn_3_of_a_300_turn_conversation_is_recalled_with_memory_off(
    make_settings: Callable[..., Settings], fake: FakeTokModel, replier: RecordingReplier
) -> None:
    settings = make_settings(TOKBOT_CONTEXT_BUDGET_TOKENS="400")
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        for n in range(300):
            said = "the staging database password is in vault path ops/stg" if n == 2 else ""
            await core.store.add_turn(
                KEY,
                role=TurnRole.USER if n % 2 == 0 else TurnRole.ASSISTANT,
                kind=TurnKind.TEXT,
                content=said or f"turn {n}: small talk about lunch and coffee",
                author=ALICE if n % 2 == 0 else BOT_AUTHOR,
            )
        await core.handle(message("ask", "where is the staging database password?"), replier)
    sent = [r.json["messages"] for r in fake.requests if r.path == CHAT and r.json][-1]
    notes = "\n".join(m["content"] for m in sent if m["role"] == "system")
    assert "] the staging database password is in vault path ops/stg" in notes
    assert "_Sources: Alice, " in replier.last

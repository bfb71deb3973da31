"""Store behaviour on real databases (SQLite file; PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path

import pytest
from sqlalchemy import Double, Integer, String, cast, insert, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.domain import Author, ConversationKey, Turn, TurnKind, TurnRole, TurnStatus
from bot.store import ChannelSettings, Store, UsageSummary
from bot.store.models import ConversationRow, TurnRow
from bot.store.store import _bound_page_query, context_query
from bot.tokmodel.types import Usage

KEY = ConversationKey("slack", "T1", "C1")
THREAD = ConversationKey("slack", "T1", "C1", "1700000000.000100")
ALICE = Author("U1", "alice")
BOT = Author("B1", "tokbot", is_bot=True)


async def say(
    store: Store,
    text: str,
    key: ConversationKey = KEY,
    *,
    status: TurnStatus = TurnStatus.OK,
    platform_message_id: str | None = None,
) -> int:
    return await store.add_turn(
        key,
        role=TurnRole.USER,
        kind=TurnKind.TEXT,
        content=text,
        author=ALICE,
        status=status,
        platform_message_id=platform_message_id,
    )


async def contents(turns: Awaitable[list[Turn]]) -> list[str]:
    return [turn.content for turn in await turns]


async def test_turns_round_trip(store: Store) -> None:
    before = time.time()
    asked = await say(store, "what is 2+2?", platform_message_id="m1")
    answer = await store.add_turn(
        KEY,
        role=TurnRole.ASSISTANT,
        kind=TurnKind.TEXT,
        content="",
        author=BOT,
        status=TurnStatus.PENDING,
        model="openai/gpt-4o-mini",
    )
    await store.update_turn(answer, content="4", status=TurnStatus.OK, platform_message_id="m2")
    failed = await store.add_turn(
        KEY,
        role=TurnRole.ASSISTANT,
        kind=TurnKind.TEXT,
        content="",
        author=BOT,
        status=TurnStatus.FAILED,
        error="RateLimited: retry after 3s",
    )

    first, second, third = await store.history(KEY)

    assert (first.id, second.id, third.id) == (asked, answer, failed)
    assert first.role is TurnRole.USER and first.kind is TurnKind.TEXT
    assert (first.content, first.author_id, first.author_name) == ("what is 2+2?", "U1", "alice")
    assert first.platform_message_id == "m1" and first.status is TurnStatus.OK
    assert before <= first.created_at <= second.created_at <= time.time()
    assert (second.role, second.content, second.status) == (TurnRole.ASSISTANT, "4", TurnStatus.OK)
    assert second.platform_message_id == "m2" and second.error is None
    assert third.status is TurnStatus.FAILED and third.error == "RateLimited: retry after 3s"


async def test_update_of_unknown_turn_raises(store: Store) -> None:
    with pytest.raises(LookupError):
        await store.update_turn(12345, content="x")


async def test_threads_are_separate_conversations(store: Store) -> None:
    await say(store, "in channel")
    await say(store, "in thread", key=THREAD)
    await say(store, "elsewhere", key=ConversationKey("discord", "T1", "C1"))

    assert await contents(store.context_turns(KEY, 10)) == ["in channel"]
    assert await contents(store.context_turns(THREAD, 10)) == ["in thread"]
    assert await store.context_turns(ConversationKey("slack", "T1", "C2"), 10) == []


async def test_forget_hides_old_turns_from_context_but_history_keeps_them(store: Store) -> None:
    await store.forget(KEY)  # no conversation yet: nothing to do
    for word in ("one", "two", "three"):
        await say(store, word)
    await say(store, "other thread", key=THREAD)

    await store.forget(KEY)

    assert await store.context_turns(KEY, 10) == []
    assert await contents(store.context_turns(THREAD, 10)) == ["other thread"]
    await say(store, "four")
    await store.forget(THREAD)
    assert await contents(store.context_turns(KEY, 10)) == ["four"]
    assert await contents(store.history(KEY)) == ["one", "two", "three", "four"]
    assert await contents(store.history(KEY, limit=2)) == ["three", "four"]
    await store.forget(KEY)
    await store.forget(KEY)  # forgetting twice changes nothing
    assert await store.context_turns(KEY, 10) == []


async def test_context_limit_returns_newest_turns_oldest_first(store: Store) -> None:
    for i in range(10):
        await say(store, f"t{i}")

    assert await contents(store.context_turns(KEY, 3)) == ["t7", "t8", "t9"]
    assert len(await store.context_turns(KEY, 50)) == 10
    assert await store.context_turns(KEY, 0) == []


async def test_context_pages_back_with_before_id(store: Store) -> None:
    await say(store, "old")
    await store.forget(KEY)
    for i in range(10):
        await say(store, f"t{i}")
    await say(store, "other thread", key=THREAD)
    newest = await store.context_turns(KEY, 3)
    older = await store.context_turns(KEY, 4, before_id=newest[0].id)
    assert [t.content for t in older] == ["t3", "t4", "t5", "t6"]
    oldest = await store.context_turns(KEY, 10, before_id=older[0].id)
    assert [t.content for t in oldest] == ["t0", "t1", "t2"]  # stops at the context start
    # Every page of one size runs the one statement built (and compiled) for it: building one
    # cost more than reading a page of a long thread (issue 16).
    built = _bound_page_query.cache_info().misses
    again = await store.context_turns(KEY, 4, before_id=older[-1].id + 1)
    assert [t.content for t in again] == ["t3", "t4", "t5", "t6"]
    assert _bound_page_query.cache_info().misses == built


async def test_context_includes_every_status(store: Store) -> None:
    for status in TurnStatus:
        await say(store, status.value, status=status)

    turns = await store.context_turns(KEY, 10)

    assert [turn.status for turn in turns] == list(TurnStatus)


async def _insert_turns(conn: AsyncConnection, conversation_id: int, count: int) -> None:
    """`count` turns in one INSERT ... SELECT over a recursive counter."""
    seq = select(literal_column("1", Integer).label("n")).cte("seq", recursive=True)
    seq = seq.union_all(select(seq.c.n + 1).where(seq.c.n < count))
    rows = select(
        literal_column(str(conversation_id)),
        literal_column("'user'"),
        literal_column("'text'"),
        literal_column("'ok'"),
        literal_column("'filler '", String) + cast(seq.c.n, String),
        literal_column("'U1'"),
        literal_column("'alice'"),
        cast(seq.c.n, Double),
    )
    columns = ["conversation_id", "role", "kind", "status", "content", "author_id"]
    columns += ["author_name", "created_at"]
    await conn.execute(insert(TurnRow).from_select(columns, rows))


async def _plan(store: Store, key: ConversationKey, *, from_context_start: bool) -> list[str]:
    dialect = store.engine.dialect.name
    stmt = context_query(key, 50, dialect=dialect, from_context_start=from_context_start)
    sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN" if dialect == "sqlite" else "EXPLAIN"
    async with store.engine.connect() as conn:
        result = await conn.execute(text(f"{explain} {sql}"))
        return [row[-1].strip() for row in result]


async def test_context_query_is_one_bounded_index_range_scan(store: Store) -> None:
    """100k turns, then /forget, then a busier conversation's turns: the context query must read
    only the index range between the context start and the newest turn, so its cost stays flat
    as history grows (timing is not asserted; the plan is)."""
    busy = ConversationKey("slack", "T1", "C-busy")
    await say(store, "first")
    await say(store, "first", key=busy)
    async with store.engine.begin() as conn:
        ids = dict((await conn.execute(select(ConversationRow.channel, ConversationRow.id))).all())
        await _insert_turns(conn, ids["C1"], 100_000)
    await store.forget(KEY)
    await say(store, "after forget")
    async with store.engine.begin() as conn:
        await _insert_turns(conn, ids["C-busy"], 20_000)
        if conn.dialect.name == "postgresql":
            await conn.execute(text("ANALYZE"))
    await say(store, "newest")

    assert await contents(store.context_turns(KEY, 50)) == ["after forget", "newest"]
    history = await store.history(KEY, 3)
    assert [turn.content for turn in history] == ["filler 100000", "after forget", "newest"]
    assert await contents(store.context_turns(busy, 2)) == ["filler 19999", "filler 20000"]

    for from_context_start in (True, False):
        plan = await _plan(store, KEY, from_context_start=from_context_start)
        if store.engine.dialect.name == "sqlite":
            # Bounded on both columns: "(conversation_id=? AND id>?)"; never a scan or a sort.
            scan = (
                "SEARCH turns USING INDEX ix_turns_conversation_id_id (conversation_id=? AND id>?)"
            )
            assert scan in plan, plan
            assert not any(step.startswith("SCAN") or "TEMP B-TREE" in step for step in plan), plan
        else:
            turns_scan = next(i for i, step in enumerate(plan) if " on turns" in step)
            assert "Index Scan Backward using ix_turns_conversation_id_id" in plan[turns_scan]
            assert plan[turns_scan + 1].startswith("Index Cond: ((ROW(conversation_id, id) > ROW(")
            assert "conversation_id <= $" in plan[turns_scan + 1], plan
            assert not any(step.startswith(("Filter", "Sort")) for step in plan[turns_scan:]), plan


async def test_channel_settings_default_upsert_reset(store: Store) -> None:
    assert await store.channel_settings(KEY) == ChannelSettings(None, None, "transcribe")

    updated = await store.update_channel_settings(KEY, updated_by="U1", model="openai/gpt-4o")
    assert updated == ChannelSettings("openai/gpt-4o", None, "transcribe")
    updated = await store.update_channel_settings(
        KEY, updated_by="U2", persona="You are terse.", transcription_mode="translate"
    )
    assert updated == ChannelSettings("openai/gpt-4o", "You are terse.", "translate")
    assert await store.channel_settings(KEY) == updated

    reset = await store.update_channel_settings(KEY, updated_by="U1", model=None)
    assert reset == ChannelSettings(None, "You are terse.", "translate")
    reset = await store.update_channel_settings(
        KEY, updated_by="U1", persona=None, transcription_mode=None
    )
    assert reset == ChannelSettings() == await store.channel_settings(KEY)


async def test_threads_use_their_channels_settings(store: Store) -> None:
    await store.update_channel_settings(THREAD, updated_by="U1", model="m1", persona="p")

    expected = ChannelSettings("m1", "p", "transcribe")
    assert await store.channel_settings(KEY) == expected
    assert await store.channel_settings(THREAD) == expected
    assert await store.channel_settings(ConversationKey("slack", "T1", "C9")) == ChannelSettings()
    assert await store.channel_settings(ConversationKey("slack", "T2", "C1")) == ChannelSettings()


async def test_unknown_transcription_mode_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="transcription mode"):
        await store.update_channel_settings(KEY, updated_by="U1", transcription_mode="shout")
    assert await store.channel_settings(KEY) == ChannelSettings()


async def test_usage_sums_per_user_and_per_channel(store: Store) -> None:
    other_channel = ConversationKey("slack", "T1", "C2")
    other_workspace = ConversationKey("slack", "T2", "C1")
    usage = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
    await store.record_usage(KEY, user_id="U1", command="ask", model="m", usage=usage)
    await store.record_usage(THREAD, user_id="U1", command="ask", model="m", usage=usage)
    await store.record_usage(KEY, user_id="U2", command="imagine", model="m", usage=None)
    await store.record_usage(other_channel, user_id="U1", command="ask", model=None, usage=usage)
    await store.record_usage(other_workspace, user_id="U1", command="ask", model="m", usage=usage)

    assert await store.usage_summary(KEY, "U1") == UsageSummary(
        user_requests=3, user_tokens=45, channel_requests=3, channel_tokens=30
    )
    assert await store.usage_summary(other_channel, "U2") == UsageSummary(1, 0, 1, 15)
    assert await store.usage_summary(ConversationKey("discord", "G", "C"), "U1") == UsageSummary(
        0, 0, 0, 0
    )


async def test_each_event_is_claimed_once_under_concurrency(
    store: Store, database_url: str
) -> None:
    replica = await Store.open(database_url)
    try:
        stores = (store, replica)
        claims = await asyncio.gather(
            *(stores[i % 2].claim_event("slack", "Ev1") for i in range(20))
        )
        assert claims.count(True) == 1
        assert await store.claim_event("slack", "Ev1") is False
        assert await replica.claim_event("discord", "Ev1") is True
        assert await store.claim_event("slack", "Ev2") is True
    finally:
        await replica.close()


async def test_prune_events_forgets_old_claims(store: Store) -> None:
    await store.claim_event("slack", "old")
    assert await store.prune_events(older_than=3600) == 0
    assert await store.prune_events(older_than=-1) == 1
    assert await store.claim_event("slack", "old") is True


async def test_concurrent_first_turns_create_one_conversation(
    store: Store, database_url: str
) -> None:
    replica = await Store.open(database_url)
    try:
        stores = (store, replica)
        ids = await asyncio.gather(*(say(stores[i % 2], f"m{i}") for i in range(20)))
        assert len(set(ids)) == 20
        async with store.engine.connect() as conn:
            conversations = (await conn.execute(select(ConversationRow.id))).all()
        assert len(conversations) == 1
        assert sorted(await contents(store.history(KEY))) == sorted(f"m{i}" for i in range(20))
    finally:
        await replica.close()


async def test_mark_pending_interrupted(store: Store) -> None:
    old = await say(store, "streaming when we crashed", status=TurnStatus.PENDING)
    done = await say(store, "done")
    cutoff = time.time()
    await asyncio.sleep(0.01)
    recent = await say(store, "another replica is streaming", status=TurnStatus.PENDING)

    assert await store.mark_pending_interrupted(before=cutoff) == 1
    statuses = {turn.id: turn.status for turn in await store.history(KEY)}
    assert statuses == {
        old: TurnStatus.INTERRUPTED,
        done: TurnStatus.OK,
        recent: TurnStatus.PENDING,
    }
    assert await store.mark_pending_interrupted() == 1
    assert await store.mark_pending_interrupted() == 0


async def test_data_survives_close_and_reopen(store: Store, database_url: str) -> None:
    turn_id = await say(store, "remember me")
    await store.update_channel_settings(KEY, updated_by="U1", persona="pirate")
    await store.claim_event("slack", "Ev1")
    await store.close()

    reopened = await Store.open(database_url)
    try:
        await reopened.upgrade()
        assert [t.id for t in await reopened.context_turns(KEY, 10)] == [turn_id]
        assert (await reopened.channel_settings(KEY)).persona == "pirate"
        assert await reopened.claim_event("slack", "Ev1") is False
        assert await say(reopened, "and me") > turn_id
    finally:
        await reopened.close()


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_open_creates_the_sqlite_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "tokbot.db"
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    try:
        await store.upgrade()
        await store.ping()
        async with store.engine.connect() as conn:
            journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
            foreign_keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
        assert (journal, foreign_keys) == ("wal", 1)
    finally:
        await store.close()
    assert path.is_file()


async def test_rate_limit_is_shared_by_every_store_on_the_database(
    store: Store, database_url: str
) -> None:
    other = await Store.open(database_url)  # another replica
    # A window that the first three calls fit in on a loaded machine (the other replica's first
    # call opens its connection: 0.5 s was too short at a load average of 12).
    window = 3.0
    try:
        assert await store.acquire_rate("slack:U1", limit=2, window=window) is None
        assert await other.acquire_rate("slack:U1", limit=2, window=window) is None
        wait = await store.acquire_rate("slack:U1", limit=2, window=window)
        assert wait is not None and 0 < wait <= window
        assert await other.acquire_rate("slack:U2", limit=2, window=window) is None
        await asyncio.sleep(wait + 0.05)
        assert await other.acquire_rate("slack:U1", limit=2, window=window) is None
    finally:
        await other.close()


async def test_the_ask_path_stores_reads_and_finishes_like_the_single_methods(
    store: Store,
) -> None:
    """`answer_context`, `add_exchange` and `finish_answer` (the /ask path, fewer round trips)
    agree with `channel_settings`, `context_turns`, `update_turn` and `record_usage`."""
    await say(store, "earlier")
    await store.update_channel_settings(KEY, updated_by="U1", persona="Be brief.")
    settings, older = await store.answer_context(KEY, limit=5)
    assert settings == await store.channel_settings(KEY)
    assert older == await store.context_turns(KEY, 5)
    asked, answer = await store.add_exchange(
        KEY, prompt="and now?", author=ALICE, platform_message_id="m9", model="m/1"
    )
    assert asked < answer
    pending = (await store.context_turns(KEY, 2))[-1]
    assert (pending.id, pending.status, pending.role) == (
        answer,
        TurnStatus.PENDING,
        TurnRole.ASSISTANT,
    )
    await store.finish_answer(
        answer, content="now.", platform_message_id=None, key=KEY, user_id="U1",
        command="ask", model="m/1", usage=Usage(3, 2, 5),
    )  # fmt: skip
    turns = await store.context_turns(KEY, 3)
    assert [(t.content, t.status, t.platform_message_id) for t in turns] == [
        ("earlier", TurnStatus.OK, None),
        ("and now?", TurnStatus.OK, "m9"),
        ("now.", TurnStatus.OK, None),
    ]
    assert await store.usage_summary(KEY, "U1") == UsageSummary(1, 5, 1, 5)
    with pytest.raises(LookupError):
        await store.finish_answer(
            answer + 100, content="x", platform_message_id=None, key=KEY, user_id="U1",
            command="ask", model=None, usage=None,
        )  # fmt: skip
    assert await store.usage_summary(KEY, "U1") == UsageSummary(1, 5, 1, 5)

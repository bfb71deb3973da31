"""How the store runs statements on SQLite (`bot.store.database`): its own aiosqlite connections
for a file, SQLAlchemy's engine in memory. Transactions must hold whatever happens to the
coroutine that opened them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.domain import Author, ConversationKey, TurnKind, TurnRole
from bot.store import Store
from bot.store.database import EngineDatabase, SqliteDatabase
from bot.store.store import POOL_OVERFLOW, POOL_SIZE, URGENT_CONNECTIONS

KEY = ConversationKey("console", "local", "general")
ALICE = Author("u1", "Alice")


async def open_store(url: str) -> Store:
    store = await Store.open(url)
    await store.upgrade()
    return store


async def add(store: Store, content: str) -> int:
    return await store.add_turn(
        KEY, role=TurnRole.USER, kind=TurnKind.TEXT, content=content, author=ALICE
    )


async def test_a_file_uses_its_own_connections_and_memory_uses_the_engine(tmp_path: Path) -> None:
    on_disk = await open_store(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    in_memory = await open_store("sqlite+aiosqlite:///:memory:")
    try:
        assert isinstance(on_disk._db, SqliteDatabase)
        assert isinstance(in_memory._db, EngineDatabase)
        for store in (on_disk, in_memory):
            await add(store, "hello")
            assert [t.content for t in await store.context_turns(KEY, 10)] == ["hello"]
    finally:
        await on_disk.close()
        await in_memory.close()


async def test_a_failed_transaction_leaves_nothing_and_the_next_one_works(tmp_path: Path) -> None:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    try:
        await add(store, "kept")
        with pytest.raises(LookupError):  # the usage insert after it must not be committed
            await store.finish_answer(
                999, content="x", platform_message_id=None, key=KEY, user_id="u1",
                command="ask", model=None, usage=None,
            )  # fmt: skip
        summary = await store.usage_summary(KEY, "u1")
        assert summary.user_requests == 0
        await add(store, "after")
        assert [t.content for t in await store.context_turns(KEY, 10)] == ["kept", "after"]
    finally:
        await store.close()


async def test_writers_cancelled_at_any_point_leave_no_transaction_open(tmp_path: Path) -> None:
    """Cancel many writers at once, at every stage of their transactions: later writes must
    still commit (no connection stuck in a transaction, no lock held)."""
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    try:
        await add(store, "first")  # the conversation exists: add_exchange is one transaction
        for round_ in range(20):
            tasks = [
                asyncio.ensure_future(
                    store.add_exchange(
                        KEY,
                        prompt=f"q{round_}.{i}",
                        author=ALICE,
                        platform_message_id=None,
                        model="m",
                    )  # fmt: skip
                )
                for i in range(5)
            ]
            await asyncio.sleep(0.0002 * round_)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.wait_for(add(store, "last"), timeout=5)
        turns = await store.history(KEY, 1000)
        assert turns[-1].content == "last"
        questions = [t for t in turns if t.role is TurnRole.USER and t.content.startswith("q")]
        answers = [t for t in turns if t.role is TurnRole.ASSISTANT]
        assert len(questions) == len(answers)  # each exchange was stored whole, or not at all
    finally:
        await store.close()
    reopened = await open_store(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    try:
        assert (await reopened.history(KEY, 1))[0].content == "last"  # committed to the file
    finally:
        await reopened.close()


async def test_enqueues_waiting_together_share_one_transaction(tmp_path: Path) -> None:
    """A burst of events is stored in a group commit (issue 16); each caller still learns
    whether its event was new, a duplicate in the same batch included, and a caller cancelled
    while waiting stores nothing."""
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    database = store._db
    assert isinstance(database, SqliteDatabase)
    trips = 0
    original = database._writer_connection

    async def counted() -> object:
        nonlocal trips
        trips += 1
        return await original()

    database._writer_connection = counted  # type: ignore[method-assign,assignment]
    try:

        async def enqueue(event_id: str) -> int | None:
            return await store.enqueue(KEY, event_id, owner="me", payload="{}", line=0)

        async with database._write_lock.hold():  # the writer is busy: the burst queues
            burst = [asyncio.create_task(enqueue(f"E{n % 5}")) for n in range(6)]
            cancelled = asyncio.create_task(enqueue("E-gone"))
            await asyncio.sleep(0)
            cancelled.cancel()
        ids = await asyncio.gather(*burst)
        assert trips == 1
        assert ids[5] is None  # E0 again: a duplicate, even within the batch
        assert len({i for i in ids[:5]}) == 5 and None not in ids[:5]
        assert await enqueue("E-gone") is not None  # never stored by the cancelled caller
        assert await enqueue("E1") is None  # committed: seen by the next writer
    finally:
        await store.close()


async def test_execute_each_gives_each_statements_rows_in_order(tmp_path: Path) -> None:
    from sqlalchemy import bindparam, select

    from bot.store.models import TurnRow

    on_disk = await open_store(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    in_memory = await open_store("sqlite+aiosqlite:///:memory:")
    try:
        for store in (on_disk, in_memory):
            first, second = await add(store, "one"), await add(store, "two")
            content = select(TurnRow.content).where(TurnRow.id == bindparam("turn"))
            async with store._db.reading() as conn:  # (SQLite file: one trip for both)
                results = await conn.execute_each(
                    [(content, {"turn": second}), (content, {"turn": first})]
                )
            assert [r.scalar_one() for r in results] == ["two", "one"]
    finally:
        await on_disk.close()
        await in_memory.close()


async def test_an_acknowledgement_finds_a_connection_while_answers_hold_theirs(
    database_url: str,
) -> None:
    """PostgreSQL: reads and writes that are not urgent hold at most the pool's connections less
    URGENT_CONNECTIONS, so the INSERT an acknowledgement waits on (the inbox's) finds one free.
    Under a burst, answers' work had held all 15 and an acknowledgement waited out the pool's
    30 s (Slack got a 500)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite: writers queue in the process, urgent ones first")
    store = await open_store(database_url)
    ordinary = POOL_SIZE + POOL_OVERFLOW - URGENT_CONNECTIONS
    release = asyncio.Event()
    holding = 0

    async def answer_work() -> None:
        nonlocal holding
        async with store.database.reading():
            holding += 1
            await release.wait()

    answers = [asyncio.create_task(answer_work()) for _ in range(POOL_SIZE + POOL_OVERFLOW)]
    try:
        async with asyncio.timeout(30):
            while holding < ordinary:
                await asyncio.sleep(0.01)
        async with asyncio.timeout(10):  # (the pool alone would have made it wait 30 s)
            claimed = await store.enqueue(KEY, "Ev1", owner="me", payload="{}", line=1)
        assert claimed is not None
        assert holding == ordinary  # the other answers wait for a place
    finally:
        release.set()
        await asyncio.gather(*answers)
        await store.close()

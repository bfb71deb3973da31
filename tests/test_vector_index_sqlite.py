"""Team memory's vector index on SQLite (sqlite-vec, `bot.store.vector_index_sqlite`), on real
SQLite files with the real extension: what it finds that full text cannot, channels and models
kept apart, deletions at once, vectors stored before it copied in, and recall without it when
sqlite-vec cannot be loaded (only the loader is made to fail)."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, text

from bot.domain import ConversationKey
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.store import Store
from bot.store import vector_index_sqlite as vis
from bot.store.memory import ObservedMessage
from bot.store.vectors import PendingText
from bot.tokmodel.fake import FakeTokModel
from tests.conftest import API_KEY
from tests.platform import KEY, RecordingReplier, message
from tests.test_embeddings import CHAT, until

MODEL = "openai/text-embedding-3-small"
OTHER = ConversationKey(KEY.platform, KEY.workspace, "C-other")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only (sqlite-vec is SQLite's; pgvector has its own tests)."""
    return f"sqlite+aiosqlite:///{tmp_path}/t.db"


@pytest.fixture(autouse=True)
def _loading_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test finds sqlite-vec afresh (a test may make its loader fail)."""
    monkeypatch.setattr(vis, "_loading", vis._Loading())


def without_sqlite_vec(monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite-vec cannot be loaded (as in a Python whose sqlite3 loads no extension and
    links SQLite statically): both loaders fail. (SQLite keeps an auto_extension registered
    by an earlier test; tokbot then just does not use it.)"""

    def fail(*_: Any) -> Any:
        raise OSError("simulated: no extension loading here")

    monkeypatch.setattr(vis, "_loading", vis._Loading())
    monkeypatch.setattr(vis, "_open_library", fail)
    monkeypatch.setattr(vis, "_load", fail)


def observed(n: int, text_: str, key: ConversationKey = KEY) -> ObservedMessage:
    return ObservedMessage(
        key, f"msg-{key.channel}-{n}", "u-bob", "Bob", text_, 1_764_000_000.0 + n, f"https://x/{n}"
    )


def direction(i: int, dims: int = 16) -> list[float]:
    """A unit vector pointing its own way (`i` apart: not near)."""
    values = [math.cos(i * 1.7 + j * (i + 1)) for j in range(dims)]
    norm = math.hypot(*values)
    return [v / norm for v in values]


async def embed(store: Store, vectors: dict[str, list[float]], *, model: str = MODEL) -> None:
    """Store a vector for every queued message whose text is a key of `vectors` (as the
    background embedder does, with vectors of the test's choosing)."""
    pending = await store.vectors.pending(1000)
    done: list[tuple[PendingText, list[float] | None]] = [
        (p, vectors[p.content]) for p in pending if p.content in vectors
    ]
    await store.vectors.store(done, model=model)
    await store.vectors.release([p for p in pending if p.content not in vectors])


async def indexed(store: Store, dims: int = 16) -> set[int]:
    """The vec0 rowids in the index's table for `dims` (row id * 2 + 1 for turns)."""
    stmt = text(f"SELECT rowid FROM vec_bits_{dims}").columns(rowid=Integer)
    async with store.database.reading() as conn:
        return {r.rowid for r in (await conn.execute(stmt)).all()}


# A question and a fact that share all its words, posted before 250 messages that each have one
# of them among five others. Full text looks at the newest RANKED_WINDOW // 3 = 66 matches of
# each word (bot/store/memory.py): all fillers, so the fact is never a candidate. The stand-in's
# hashed bags of words put the fact nearest the question (cosine ~0.87 against ~0.24), and
# nearest by Hamming distance too after binary quantization (it has the fewest words besides).
QUESTION = "deploy window tuesday"
FACT = "Deploy window: Tuesday"
WORDS = ("deploy", "window", "tuesday")


def filler(n: int) -> str:
    return f"{WORDS[n % 3]} note{n} alpha{n} beta{n} gamma{n} delta{n}"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        TOKBOT_EMBEDDINGS="on", TOKBOT_MEMORY_CANDIDATES="5", TOKBOT_MEMORY_RECALLED="3"
    )


@pytest.mark.parametrize("sqlite_vec", ["loaded", "unavailable"])
async def test_the_index_finds_what_full_text_cannot_and_the_answer_cites_it(
    settings: Settings,
    fake: FakeTokModel,
    replier: RecordingReplier,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    sqlite_vec: str,
) -> None:
    if sqlite_vec == "unavailable":
        without_sqlite_vec(monkeypatch)
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        await core.memory.switch(KEY, True, by="u-admin")
        assert await core.memory.observe(observed(1, FACT))
        for n in range(2, 252):
            assert await core.memory.observe(observed(n, filler(n)))
        best = await core.memory.candidates(KEY, QUESTION, limit=50)
        assert best and FACT not in [c.content for c in best]  # full text cannot find it
        assert core.embedder is not None
        core.embedder.wake()
        await until(lambda: _queue_empty(core.store))
        described = await core.store.vectors.describe_index()
        await core.handle(message("ask", QUESTION), replier)
    found = sqlite_vec == "loaded"
    if found:
        assert "sqlite-vec 0.1.9" in described and "newest 8,192 vectors" in described
    else:
        assert "no vector index" in described
        assert "simulated: no extension loading here" in caplog.text
    sent = [r.json["messages"] for r in fake.requests if r.path == CHAT and r.json][-1]
    notes = "\n".join(m["content"] for m in sent if m["role"] == "system")
    assert (f"[Bob, 2025-11-24] {FACT}" in notes) is found
    assert ("https://x/1)" in replier.last or "https://x/1>" in replier.last) is found


async def test_a_question_full_text_has_no_word_of_is_answered_from_the_index(
    settings: Settings, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    """Recall's full text searches no common word ("to", "be", "or", "not": bot/memory.py's
    stop words), so this question gives it nothing to look for; the index is still asked, by
    `/ask` and by `/recall` (which refuses such a question only without an index)."""
    quote = "Hamlet asked: to be or not to be"
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        await core.memory.switch(KEY, True, by="u-admin")
        assert await core.memory.observe(observed(1, quote))
        assert await core.memory.candidates(KEY, "to be or not to be?", limit=5) == []
        assert core.embedder is not None
        core.embedder.wake()
        await until(lambda: _queue_empty(core.store))
        await core.handle(message("ask", "to be or not to be?"), replier)
        answered = replier.last
        await core.handle(message("recall", "to be or not to be"), replier)
    sent = [r.json["messages"] for r in fake.requests if r.path == CHAT and r.json][-1]
    notes = "\n".join(m["content"] for m in sent if m["role"] == "system")
    assert quote in notes
    assert "https://x/1" in answered
    assert quote in replier.last and "too common" not in replier.last


async def _queue_empty(store: Store) -> bool:
    return await store.vectors.queued() == 0


async def test_channels_and_models_are_kept_apart(store: Store) -> None:
    await store.memory.set_enabled(KEY, True, by="u-admin")
    await store.memory.set_enabled(OTHER, True, by="u-admin")
    await store.memory.observe(observed(1, "here, model A"))
    await store.memory.observe(observed(2, "here, model B"))
    await store.memory.observe(observed(3, "elsewhere", OTHER))
    await store.memory.observe(observed(4, "here, far"))
    query = direction(0)
    await embed(store, {"here, model A": query, "elsewhere": query, "here, far": direction(5)})
    await embed(store, {"here, model B": query}, model="other/model")
    index = await store.vectors.index()
    assert index is not None
    # The same vector in another channel and by another model: never returned.
    assert await index.nearest(KEY, query, model=MODEL, limit=5) == [
        ("message", 1),
        ("message", 4),
    ]
    assert await index.nearest(OTHER, query, model=MODEL, limit=5) == [("message", 3)]
    assert await index.nearest(KEY, query, model="other/model", limit=5) == [("message", 2)]
    assert await index.nearest(KEY, query, model="unknown", limit=5) == []
    assert await index.nearest(KEY, direction(0, 24), model=MODEL, limit=5) == []  # other dims


async def test_deleted_edited_and_forgotten_messages_leave_the_index_at_once(
    store: Store,
) -> None:
    await store.memory.set_enabled(KEY, True, by="u-admin")
    texts = ["kept", "deleted", "edited", "forgotten later"]
    for n, text_ in enumerate(texts, 1):
        await store.memory.observe(observed(n, text_))
    await embed(store, {t: direction(i) for i, t in enumerate(texts)})
    assert await indexed(store) == {2, 4, 6, 8}
    index = await store.vectors.index()
    assert index is not None
    assert ("message", 2) in await index.nearest(KEY, direction(1), model=MODEL, limit=4)
    assert await store.memory.delete(KEY, f"msg-{KEY.channel}-2")
    assert await indexed(store) == {2, 6, 8}  # in the deletion's own transaction
    assert ("message", 2) not in await index.nearest(KEY, direction(1), model=MODEL, limit=4)
    assert await store.memory.edit(KEY, f"msg-{KEY.channel}-3", "edited again")
    assert await indexed(store) == {2, 8}  # its old vector gone; queued for a new one
    await embed(store, {"edited again": direction(7)})
    assert await indexed(store) == {2, 6, 8}
    assert await store.memory.forget(KEY) == 3
    assert await indexed(store) == set()


async def test_a_shell_without_sqlite_vec_cannot_delete_half(store: Store, tmp_path: Path) -> None:
    """Another process's plain sqlite3 (no extension): its deletion fails whole, and says why."""
    await store.memory.set_enabled(KEY, True, by="u-admin")
    await store.memory.observe(observed(1, "a message"))
    await embed(store, {"a message": direction(1)})
    script = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "try:\n"
        "    db.execute('DELETE FROM observed_messages')\n"
        "except sqlite3.OperationalError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "t.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "no such module: vec0"
    assert await indexed(store) == {2}
    assert await store.memory.count(KEY) == 1  # nothing half done


async def test_vectors_stored_before_the_index_are_copied_in_resumably(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vis, "BACKFILL_BATCH", 2)
    texts = [f"message {n}" for n in range(5)]
    # A tokbot without sqlite-vec stores the vectors: no index.
    with monkeypatch.context() as without:
        without_sqlite_vec(without)
        async with opened(database_url) as store:
            await store.memory.set_enabled(KEY, True, by="u-admin")
            for n, text_ in enumerate(texts, 1):
                await store.memory.observe(observed(n, text_))
            assert await store.vectors.index() is None
            await embed(store, {t: direction(i) for i, t in enumerate(texts)})
    # One with it starts copying them in and stops after a batch (as if it was stopped).
    async with opened(database_url) as store:
        index = await store.vectors.index()
        assert isinstance(index, vis.SqliteVecIndex)
        await index.close()  # (cancels the background copy before its first batch)
        assert not await index._copy_batch()
        assert await indexed(store) == {2, 4}
    # The next goes on where it stopped.
    async with opened(database_url) as store:
        index = await store.vectors.index()
        assert isinstance(index, vis.SqliteVecIndex)
        task = index.backfill
        assert task is not None and "copying" in index.describe()
        await task
        assert index.copied == 3 and "up to date" in index.describe()
        assert await indexed(store) == {2, 4, 6, 8, 10}
        assert await index.nearest(KEY, direction(3), model=MODEL, limit=1) == [("message", 4)]


async def test_a_tokbot_without_sqlite_vec_drops_the_triggers_and_the_index_is_rebuilt(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with opened(database_url) as store:
        await store.memory.set_enabled(KEY, True, by="u-admin")
        for n in (1, 2):
            await store.memory.observe(observed(n, f"message {n}"))
        await embed(store, {"message 1": direction(1), "message 2": direction(2)})
        assert await indexed(store) == {2, 4}
    with monkeypatch.context() as without:
        without_sqlite_vec(without)
        async with opened(database_url) as store:
            assert await store.vectors.index() is None
            # It can delete (no trigger needs vec0), but the index is not told; nor of a
            # vector it stores.
            assert await store.memory.delete(KEY, f"msg-{KEY.channel}-1")
            await store.memory.observe(observed(3, "message 3"))
            await embed(store, {"message 3": direction(3)})
    async with opened(database_url) as store:
        index = await store.vectors.index()
        assert isinstance(index, vis.SqliteVecIndex) and index.backfill is not None
        await index.backfill
        assert await indexed(store) == {4, 6}  # rebuilt from `embeddings`: the deleted one gone
        assert await index.nearest(KEY, direction(3), model=MODEL, limit=1) == [("message", 3)]


class opened:
    """A migrated store on `url`, closed on leaving."""

    def __init__(self, url: str) -> None:
        self._url = url

    async def __aenter__(self) -> Store:
        self._store = await Store.open(self._url)
        await self._store.upgrade()
        return self._store

    async def __aexit__(self, *_: object) -> None:
        await self._store.close()

"""pgvector as team memory's vector index (bot.store.vector_index_pg), on real PostgreSQL.

Every test here needs a server with the pgvector extension available (`pg_available_extensions`)
and skips, saying so, without it; pgvector is built outside the repository (README, "Team
memory"). Vectors are the stand-in's (a hashed bag of words: texts with no word in common are
orthogonal, so "near" below always means "shares words")."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.domain import ConversationKey
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.store import Store, vector_index_pg
from bot.store.memory import ObservedMessage
from bot.store.memory_pg import RARE_MATCHES, RECENT_ROWS
from bot.store.vector_index_pg import PgVectorIndex
from bot.tokmodel.fake import FakeTokModel, stand_in_embedding
from tests.conftest import API_KEY
from tests.db import POSTGRES_URL_VARIABLE, reset_postgres, worker_postgres_url
from tests.platform import KEY, RecordingReplier, message

pytestmark = pytest.mark.postgres

MODEL = "openai/text-embedding-3-small"
OTHER = ConversationKey("test", "w1", "c-other")
TABLE = "tokbot_vectors_256"
FACT = "the deploy window moved to friday"
QUESTION = "deploy window?"
NO_PGVECTOR = "this PostgreSQL server has no pgvector extension (pg_available_extensions)"


async def _sql(url: str, statement: str, params: dict[str, object] | None = None) -> list[object]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params or {})
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def database_url() -> AsyncIterator[str]:
    """A PostgreSQL database with an emptied `public` schema (the extension goes with it),
    on a server that has pgvector; these tests skip otherwise."""
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set (a postgresql+asyncpg:// URL)")
    url = await worker_postgres_url(url)
    await reset_postgres(url)
    if not await _sql(url, "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"):
        pytest.skip(NO_PGVECTOR)
    yield url


def observed(n: int, text: str, key: ConversationKey = KEY) -> ObservedMessage:
    return ObservedMessage(
        key, f"msg-{n}", "u-bob", "Bob", text, 1_764_000_000.0 + n, f"https://x/{n}"
    )


async def embed_queued(store: Store, model: str = MODEL) -> None:
    """Write the stand-in's vectors for every queued row, as the embedder would."""
    while pending := await store.vectors.pending(500):
        done = [(p, stand_in_embedding(p.content or "")) for p in pending]
        await store.vectors.store(done, model=model)
    index = await store.vectors.index()
    if isinstance(index, PgVectorIndex):  # (a new table's first vectors come by the backfill)
        await index.backfilled()


async def pg_index(store: Store) -> PgVectorIndex:
    index = await store.vectors.index()
    assert isinstance(index, PgVectorIndex)
    return index


async def indexed_rows(store: Store, where: str = "true") -> list[int]:
    async with store.database.reading() as conn:
        rows = await conn.execute(text(f"SELECT row_id FROM {TABLE} WHERE {where} ORDER BY 1"))
    return [int(r) for r in rows.scalars()]


async def test_detect_creates_the_extension_and_describes_it(store: Store) -> None:
    index = await pg_index(store)
    assert index.name.startswith("pgvector 0.")
    await store.memory.observe(observed(1, FACT))
    await embed_queued(store)
    await index.backfilled()
    line = await store.vectors.describe_index()
    assert line.startswith(f"pgvector {index.version} (HNSW, cosine")
    assert TABLE in line


async def test_the_index_finds_a_message_full_text_misses(
    make_settings: Callable[..., Settings], fake: FakeTokModel, replier: RecordingReplier
) -> None:
    """FACT is older than the channel's newest RECENT_ROWS messages, and the question's words
    are common (in more than RARE_MATCHES messages, here another channel's), so PostgreSQL's
    full-text search looks for them among those newest rows only (bot.store.memory_pg) and
    misses FACT; its vector shares both words and the index finds it."""
    settings = make_settings(TOKBOT_EMBEDDINGS="on", TOKBOT_MEMORY_RECALLED="2")
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        memory = core.store.memory
        await memory.set_enabled(KEY, True, by="u-admin")
        await memory.observe(observed(0, FACT))
        await memory.observe_many(
            [observed(n, f"standup note {n}") for n in range(1, RECENT_ROWS + 50)]
        )
        await memory.observe_many(
            [
                observed(10_000 + n, f"deploy window plan {n}", OTHER)
                for n in range(RARE_MATCHES + 100)
            ]
        )
        await embed_queued(core.store)
        async with core.store.database.writing() as conn:
            await conn.execute(text("ANALYZE observed_messages"))
        found = await core.memory.candidates(KEY, QUESTION, limit=30)
        assert FACT not in [c.content for c in found]  # full text alone misses it
        await core.handle(message("recall", QUESTION), replier)
        assert FACT in replier.last


async def test_nearest_stays_in_the_channel_and_the_model(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.memory.observe(observed(1, FACT))
    await store.memory.observe(observed(2, "standup at nine"))
    for n in range(3, 40):  # nearer the question than FACT, in another channel
        await store.memory.observe(observed(n, "deploy window deploy window", OTHER))
    await embed_queued(store)
    await store.memory.observe(observed(50, "deploy window friday"))  # another model's vector
    await embed_queued(store, model="other/model")
    index = await pg_index(store)
    query = stand_in_embedding(QUESTION)
    for exact in (vector_index_pg.EXACT_ROWS, 1):  # small channel (btree), big one (HNSW)
        monkeypatch.setattr(vector_index_pg, "EXACT_ROWS", exact)
        assert (await index.nearest(KEY, query, model=MODEL, limit=1)) == [("message", 1)]
        near = set(await index.nearest(KEY, query, model=MODEL, limit=10))
        # (HNSW is approximate: "standup at nine", orthogonal to the question, may be missed)
        assert ("message", 1) in near and near <= {("message", 1), ("message", 2)}
        if exact > 1:  # the exact search gives all of them
            assert near == {("message", 1), ("message", 2)}
        other = await index.nearest(KEY, query, model="other/model", limit=10)
        assert other == [("message", 40)]  # (msg-50, the 40th row stored)
        assert await index.nearest(KEY, query[:3], model=MODEL, limit=10) == []  # no table


async def test_each_way_is_chosen_by_the_channels_size(store: Store) -> None:
    """EXPLAIN: a small channel runs the btree branch (HNSW never started), a big one HNSW."""
    await store.memory.observe(observed(1, FACT))
    await embed_queued(store)
    index = await pg_index(store)
    params = {
        "scope": vector_index_pg.scope(KEY),
        "model": MODEL,
        "query": vector_index_pg._vector_text(stand_in_embedding(QUESTION)),
        "limit": 5,
    }
    btree, hnsw = (f"Index Scan using ix_{TABLE}_{kind}" for kind in ("scope", "hnsw"))
    for exact, ran, not_ran in ((100, btree, "hnsw"), (1, hnsw, btree)):
        async with store.database.writing() as conn:  # (the settings are the transaction's)
            await conn.execute(vector_index_pg._SEARCH_SETTINGS, {"ef_search": "40"})
            explain = text(f"EXPLAIN (ANALYZE, COSTS OFF) {vector_index_pg._nearest(256).text}")
            plan = (await conn.execute(explain, params | {"exact": exact})).scalars()
        run = [line for line in plan if "never executed" not in line]
        assert any(ran in line for line in run), plan
        assert not any(not_ran in line for line in run), plan
    assert await index.nearest(KEY, stand_in_embedding(QUESTION), model=MODEL, limit=5)


async def test_deleting_and_forgetting_remove_the_index_entries_at_once(store: Store) -> None:
    await store.memory.set_enabled(KEY, True, by="u-admin")
    for n in range(1, 4):
        await store.memory.observe(observed(n, f"{FACT} {n}"))
    await store.memory.observe(observed(4, FACT, OTHER))
    await embed_queued(store)
    index = await pg_index(store)
    assert await indexed_rows(store) == [1, 2, 3, 4]
    assert await store.memory.delete(KEY, "msg-2")
    assert await indexed_rows(store) == [1, 3, 4]  # (no background step: the same transaction)
    query = stand_in_embedding(FACT)
    assert ("message", 2) not in await index.nearest(KEY, query, model=MODEL, limit=10)
    assert await store.memory.forget(KEY) == 2
    assert await indexed_rows(store) == [4]
    assert await index.nearest(KEY, query, model=MODEL, limit=10) == []


async def test_an_edit_replaces_the_indexed_vector(store: Store) -> None:
    await store.memory.observe(observed(1, "standup at nine"))
    await embed_queued(store)
    index = await pg_index(store)
    query = stand_in_embedding(QUESTION)
    assert await store.memory.edit(KEY, "msg-1", FACT)
    assert await indexed_rows(store) == []  # the old vector went with the edit
    await embed_queued(store)
    assert await index.nearest(KEY, query, model=MODEL, limit=1) == [("message", 1)]


async def test_vectors_stored_before_the_index_are_copied_in_resumably(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_index(db: object) -> None:
        return None

    monkeypatch.setattr(vector_index_pg, "detect", no_index)
    for n in range(1, 6):
        await store.memory.observe(observed(n, f"{FACT} {n}"))
    await embed_queued(store)  # (written with no index: pgvector not set up yet)
    monkeypatch.undo()
    monkeypatch.setattr(vector_index_pg, "BACKFILL_BATCH", 2)
    first = await vector_index_pg.detect(store.database)
    assert first is not None
    await first.close()  # (stopped wherever it got to; or never started)
    await first.prepare(256)
    assert await first.backfill_batch() == 2  # two more, in primary key order
    copied = await indexed_rows(store)
    assert len(copied) in (2, 4)
    # A restart resumes from the recorded place: what was copied is not copied again.
    second = await vector_index_pg.detect(store.database)
    assert second is not None
    await second.backfilled()
    assert await indexed_rows(store) == [1, 2, 3, 4, 5]
    near = await second.nearest(KEY, stand_in_embedding(FACT), model=MODEL, limit=10)
    assert sorted(near) == [("message", n) for n in range(1, 6)]
    async with store.database.reading() as conn:
        done = await conn.execute(text("SELECT done FROM tokbot_vector_backfill"))
    assert done.scalar_one() is True


async def test_without_the_right_to_create_the_extension_recall_still_works(
    database_url: str,
    make_settings: Callable[..., Settings],
    fake: FakeTokModel,
    replier: RecordingReplier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A role that may not CREATE EXTENSION (pgvector is not a trusted extension): no index,
    one log line saying what an admin should run, and recall from full text and vectors."""
    role = "tokbot_no_vector"
    await _sql(  # (a role is the server's: another session may be creating it too)
        database_url,
        f"DO $$ BEGIN CREATE ROLE {role} LOGIN; "
        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )
    await _sql(database_url, f"GRANT ALL ON SCHEMA public TO {role}")
    url = make_url(database_url).set(username=role).render_as_string(hide_password=False)
    settings = make_settings(DATABASE_URL=url, TOKBOT_EMBEDDINGS="on")
    with caplog.at_level(logging.INFO):
        async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
            assert await core.store.vectors.index() is None
            await core.store.memory.set_enabled(KEY, True, by="u-admin")
            await core.store.memory.observe(observed(1, FACT))
            await embed_queued(core.store)
            await core.handle(message("recall", QUESTION), replier)
            assert FACT in replier.last
            assert (await core.store.vectors.describe_index()).startswith("no vector index")
    assert "CREATE EXTENSION vector" in caplog.text
    assert not await _sql(database_url, "SELECT 1 FROM pg_extension WHERE extname = 'vector'")


async def test_replicas_detecting_at_once_make_one_extension_and_one_table(
    database_url: str,
) -> None:
    """Several processes starting together (each its own engine): the advisory lock has them
    take turns, where `CREATE ... IF NOT EXISTS` alone can fail on pg_type's unique index."""
    stores = [await Store.open(database_url) for _ in range(4)]
    try:
        await stores[0].upgrade()
        indexes = await asyncio.gather(*(vector_index_pg.detect(s.database) for s in stores))
        await asyncio.gather(*(i.prepare(256) for i in indexes if i is not None))
        assert all(isinstance(i, PgVectorIndex) for i in indexes)
        tables = await _sql(
            database_url, "SELECT relname FROM pg_class WHERE relname = :t", {"t": TABLE}
        )
        assert len(tables) == 1
    finally:
        for s in stores:
            await s.close()

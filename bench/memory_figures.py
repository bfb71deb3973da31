"""Team memory's recall step: the database's full-text candidates for a question plus building
the context note, without TokModel's rerank (a network call, measured by TokModel, not us).

One database per engine holds a quiet channel (10^3 messages, stored first, so its matches are
the index's oldest) and a busy one (`big` messages). The text is made of a vocabulary whose word
frequencies fall off as in real text (Zipf: the k-th commonest word is 1/k as frequent as the
first), so a common word of the questions ("deploy") is in about 13 % of the messages and a
rare one ("failover") in a few hundred of 10^6. SQLite always; PostgreSQL in a database of its
own on the server at TOKBOT_BENCH_POSTGRES_SERVER (default the local one), created and dropped
here; skipped, saying why, when that server cannot be reached.

Where the store has a vector index (sqlite-vec on SQLite: `bot.store.vector_index_sqlite`),
every message also gets a vector and the recall step is recall's whole database path: the
full-text candidates (three times as many, as `Memory.recall` asks), the index's nearest to the
question's vector, those read by primary key, the candidates' stored vectors and the fused
order (`VectorRecall.order`; the question's vector is given, not asked of TokModel). Embedding
10^6 messages by the stand-in would take long, so the vectors are synthetic: `_VECTOR_POOL`
random unit vectors, cycled (the index's brute-force cost does not depend on their values), put
in `embeddings` directly and copied into the index by its own background copy (timed)."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
import sqlite3
import struct
import tempfile
import time
from array import array
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.harness import Figure, median
from bot.domain import ConversationKey
from bot.embedder import Embedder, EmbeddingConfig
from bot.memory import Recalled, context_note, query_words
from bot.store import Store, vector_index_pg
from bot.store.memory import MemoryStore
from bot.store.vector_index_pg import PgVectorIndex
from bot.store.vector_index_sqlite import SqliteVecIndex
from bot.store.vectors import pack_vector
from bot.tokmodel.client import TokModelClient
from bot.vector_recall import VectorRecall

#: Questions mixing common words (thousands to 10^5 matches at 10^6) and rare ones.
QUESTIONS = (
    "what did we decide about the deploy window for the release?",
    "who has the runbook for the database failover?",
    "is the flaky checkout test fixed in the build?",
    "when is the next release freeze?",
)
SMALL = 1_000
_POSTGRES_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
#: Where the questions' words stand in the vocabulary's frequency order (1 = commonest);
#: the rest of the top ranks are the stop words people write and recall leaves out.
_PLACED = {
    8: "deploy", 12: "build", 15: "test", 25: "release", 150: "database", 300: "window",
    800: "decide", 900: "checkout", 2_000: "flaky", 4_000: "freeze", 5_000: "runbook",
    12_000: "failover",
}  # fmt: skip
_STOP = "the to and a we i it is that for on in of you this be with have at are not".split()
_VOCABULARY_SIZE = 30_000


def _vocabulary() -> tuple[list[str], list[float]]:
    """Words and their cumulative Zipf weights."""
    stop = iter(_STOP)
    words = [
        _PLACED.get(rank) or next(stop, None) or f"x{rank}"
        for rank in range(1, _VOCABULARY_SIZE + 1)
    ]
    weights = list(itertools.accumulate(1 / rank for rank in range(1, _VOCABULARY_SIZE + 1)))
    return words, weights


def _texts(count: int, seed: int) -> Iterator[str]:
    """`count` messages of 6 to 20 words."""
    rng = random.Random(seed)
    words, weights = _vocabulary()
    for _ in range(count):
        yield " ".join(rng.choices(words, cum_weights=weights, k=rng.randint(6, 20)))


def _rows(key: ConversationKey, count: int) -> Iterator[tuple[object, ...]]:
    for n, content in enumerate(_texts(count, seed=count)):
        message_id = f"{key.channel}-{n}"
        yield (key.platform, key.workspace, key.channel, "", message_id, "u1", "Bob", content)


_COLUMNS: tuple[str, ...] = ("platform", "workspace", "channel", "thread", "message_id")
_COLUMNS += ("author_id", "author_name", "content", "link", "created_at")


def _with_times(rows: Iterator[tuple[object, ...]]) -> Iterator[tuple[object, ...]]:
    return (row + (None, 1.7e9 + n) for n, row in enumerate(rows))


def _fill_sqlite(path: Path, channels: list[tuple[ConversationKey, int]]) -> None:
    """In one transaction, with the full-text index's insert trigger set aside and the index
    rebuilt once at the end (FTS5 'rebuild': several times faster than a trigger per row);
    the trigger is put back as the migration made it."""
    marks = ", ".join("?" * len(_COLUMNS))
    with sqlite3.connect(path) as conn:
        (trigger,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'observed_fts_insert'"
        ).fetchone()
        conn.execute("DROP TRIGGER observed_fts_insert")
        for key, count in channels:
            conn.executemany(
                f"INSERT INTO observed_messages ({', '.join(_COLUMNS)}) VALUES ({marks})",
                _with_times(_rows(key, count)),
            )
        conn.execute("INSERT INTO observed_fts(observed_fts) VALUES ('rebuild')")
        conn.execute(trigger)


async def _fill_postgres(store: Store, channels: list[tuple[ConversationKey, int]]) -> None:
    """COPY, with the GIN index dropped and made again at the end (as the migration made it:
    its definition is read back), then VACUUM ANALYZE as autovacuum would."""
    async with store.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        gin = (
            await conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes "
                    "WHERE tablename = 'observed_messages' AND indexdef LIKE '%USING gin%'"
                )
            )
        ).all()
        for name, _definition in gin:
            await conn.execute(text(f"DROP INDEX {name}"))
        raw = await conn.get_raw_connection()
        for key, count in channels:
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                "observed_messages", records=_with_times(_rows(key, count)), columns=_COLUMNS
            )
        await conn.execute(text("SET maintenance_work_mem = '256MB'"))
        for _name, definition in gin:
            await conn.execute(text(definition))
        await conn.execute(text("VACUUM ANALYZE observed_messages"))


#: Distinct synthetic vectors (cycled over the messages), their length and model.
_VECTOR_POOL = 4_096
_DIMS = 256
_MODEL = "bench/embedding"
_CANDIDATES = 30
#: `TOKBOT_VECTOR_WINDOW`s compared on the same data (the default is measured on its own too).
SWEPT_WINDOWS = (4_096, 8_192, 16_384)


def _pool() -> list[list[float]]:
    rng = random.Random(_DIMS)
    pool = []
    for _ in range(_VECTOR_POOL):
        vector = [rng.gauss(0.0, 1.0) for _ in range(_DIMS)]
        norm = sum(x * x for x in vector) ** 0.5
        pool.append([x / norm for x in vector])
    return pool


def _fill_sqlite_vectors(path: Path, pool: list[list[float]]) -> int:
    """A vector for every kept message, as the background embedder would store it (queue
    entries taken, `embeddings` rows written), in one transaction; how many."""
    packed = [pack_vector(v) for v in pool]
    with sqlite3.connect(path) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM observed_messages ORDER BY id")]
        conn.executemany(
            "INSERT INTO embeddings (source, row_id, model, dims, vector, created_at) "
            "VALUES ('message', ?, ?, ?, ?, ?)",
            ((i, _MODEL, _DIMS, packed[i % len(packed)], 1.7e9) for i in ids),
        )
        conn.execute("DELETE FROM embedding_queue")
    return len(ids)


class _Step:
    """Recall's database path for a question (see the module's doc)."""

    def __init__(self, store: Store, vectors: VectorRecall | None, pool: list[list[float]]) -> None:
        self._memory: MemoryStore = store.memory
        self._vectors = vectors
        self._pool = pool

    async def __call__(self, key: ConversationKey, question: str) -> float:
        asked: asyncio.Future[list[float] | None] = asyncio.get_running_loop().create_future()
        asked.set_result(self._pool[len(question) % len(self._pool)] if self._pool else None)
        started = time.perf_counter()
        pool = await self._vectors.pool(_CANDIDATES) if self._vectors else _CANDIDATES
        found = await self._memory.candidates(key, query_words(question), limit=pool)
        if self._vectors is not None:
            found = await self._vectors.order(key, found, asked, keep=_CANDIDATES)
        recalled = [Recalled(c.author_name, c.created_at, c.content, c.link) for c in found[:5]]
        context_note(recalled)
        return time.perf_counter() - started


async def _vector_recall(
    store: Store, model: str = _MODEL, dims: int = _DIMS
) -> VectorRecall | None:
    """Recall's vector ordering where the store has an index (None: full text only). Its
    TokModel client is never called: the step is given the question's vector."""
    if await store.vectors.index() is None:
        return None
    client = TokModelClient("http://127.0.0.1:9", "unused")
    embedder = Embedder(store, client, EmbeddingConfig(model, dims, 64))
    return VectorRecall(store.vectors, embedder, store.memory)


async def _measure(
    store: Store, big: int, runs: int, engine: str, pool: list[list[float]] | None = None
) -> list[Figure]:
    vectors = await _vector_recall(store) if pool else None
    large, small = await _interleaved(_Step(store, vectors, pool or []), runs)
    index = await store.vectors.index() if vectors is not None else None
    if index is not None:
        engine += f" + {index.name}"
    return _recall_figures(engine, big, large, small)


async def _interleaved(step: _Step, runs: int) -> tuple[list[float], list[float]]:
    """The step's times in the busy and the quiet channel, each question in turn, after a
    round that warms the caches and the compiled statements."""
    big_key = ConversationKey("bench", "w", "big")
    small_key = ConversationKey("bench", "w", "small")
    for key in (big_key, small_key):
        for question in QUESTIONS:
            await step(key, question)
    large: list[float] = []
    small: list[float] = []
    for _ in range(runs):  # interleaved, so a noisy moment hits both
        for question in QUESTIONS:
            large.append(await step(big_key, question))
            small.append(await step(small_key, question))
    return large, small


def _recall_figures(engine: str, big: int, large: list[float], small: list[float]) -> list[Figure]:
    """Issue 14's two bounds: the busy channel's p50, and its ratio to the quiet one's."""
    p50, p50_small = median(large), median(small)
    ratio = p50 / p50_small
    return [
        Figure(
            f"recall step, {engine}, {big:,} kept messages in the channel, p50",
            f"{p50 * 1000:.1f} ms (worst question's p50 {_worst(large) * 1000:.1f} ms)",
            "<= 20 ms",
            p50 <= 0.020,
        ),
        Figure(
            f"recall step, {engine}, {big:,} vs {SMALL:,} kept messages, p50 ratio",
            f"{ratio:.2f} ({p50 * 1000:.1f} vs {p50_small * 1000:.1f} ms)",
            "<= 1.5",
            ratio <= 1.5,
        ),
    ]


def _worst(times: list[float]) -> float:
    """The slowest question's own p50 (times are in QUESTIONS order, round after round)."""
    n = len(QUESTIONS)
    return max(median(times[i::n]) for i in range(n))


def _channels(big: int) -> list[tuple[ConversationKey, int]]:
    # The quiet channel first: its messages are the index's oldest, behind the busy one's.
    return [
        (ConversationKey("bench", "w", "small"), SMALL),
        (ConversationKey("bench", "w", "big"), big),
    ]


def _stored(engine: str, big: int, started: float) -> None:
    seconds = time.perf_counter() - started
    print(f"  ({engine}: {big + SMALL:,} messages stored in {seconds:.0f} s)", flush=True)


async def recall(big: int, runs: int) -> list[Figure]:
    """Recall at `big` vs 10^3 kept messages, on SQLite and PostgreSQL."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "memory.db"
        store = await Store.open(f"sqlite+aiosqlite:///{path}")
        try:
            await store.upgrade()
            started = time.perf_counter()
            _fill_sqlite(path, _channels(big))
            _stored("SQLite", big, started)
            pool = _pool()
            figures = await _index_sqlite(store, path, pool)
            figures += await _measure(store, big, runs, "SQLite", pool if figures else None)
            if figures:
                figures += await _window_sweep(store, big, runs, pool)
        finally:
            await store.close()
    return figures + await _recall_postgres(big, runs)


async def _window_sweep(store: Store, big: int, runs: int, pool: list[list[float]]) -> list[Figure]:
    """The SQLite step under each `TOKBOT_VECTOR_WINDOW` of `SWEPT_WINDOWS` (a smaller window
    covers fewer of a busy channel's vectors and reads fewer), on the same data."""
    index = await store.vectors.index()
    vectors = await _vector_recall(store)
    if not isinstance(index, SqliteVecIndex) or vectors is None:
        return []
    default, figures = index.window, []
    try:
        for window in SWEPT_WINDOWS:
            index.window = window
            large, small = await _interleaved(_Step(store, vectors, pool), runs)
            p50, p50_small = median(large), median(small)
            figures.append(
                Figure(
                    f"recall step, SQLite + {index.name}, TOKBOT_VECTOR_WINDOW={window:,}: "
                    f"{big:,} vs {SMALL:,} kept messages, p50",
                    f"{p50 * 1000:.1f} vs {p50_small * 1000:.1f} ms: {p50 / p50_small:.2f}",
                    "informational",
                    None,
                )
            )
    finally:
        index.window = default
    return figures


async def _index_sqlite(store: Store, path: Path, pool: list[list[float]]) -> list[Figure]:
    """Vectors for every message, copied into sqlite-vec's index (timed); no figures where
    sqlite-vec cannot be loaded (said)."""
    count = _fill_sqlite_vectors(path, pool)
    started = time.perf_counter()
    index = await store.vectors.index()  # (detected now: its copy of older vectors starts)
    if index is None:
        print(f"  (SQLite: {await store.vectors.describe_index()})", flush=True)
        return []
    copying = getattr(index, "backfill", None)
    if copying is not None:
        await copying
    seconds = time.perf_counter() - started
    print(f"  (SQLite: {count:,} vectors copied into {index.name} in {seconds:.0f} s)")
    return [
        Figure(
            f"vector index: {count:,} stored vectors copied in ({index.name}, background)",
            f"{count / seconds:,.0f} vectors/s",
            "informational",
            None,
        )
    ]


async def _recall_postgres(big: int, runs: int) -> list[Figure]:
    server = make_url(os.environ.get("TOKBOT_BENCH_POSTGRES_SERVER", _POSTGRES_SERVER))
    name = f"tokbot_bench_{os.getpid()}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # (any failure to reach it: the figures say so)
        await admin.dispose()
        reason = f"skipped: {server.render_as_string(hide_password=True)} ({type(exc).__name__})"
        print(f"  (PostgreSQL {reason})")
        return [Figure("recall step, PostgreSQL", reason, "<= 20 ms", None)]
    try:
        store = await Store.open(server.set(database=name).render_as_string(hide_password=False))
        try:
            await store.upgrade()
            started = time.perf_counter()
            await _fill_postgres(store, _channels(big))
            _stored("PostgreSQL", big, started)
            figures = await _measure(store, big, runs, "PostgreSQL")
            return figures + await _recall_pgvector(store, big, runs)
        finally:
            await store.close()
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await admin.dispose()


# -- pgvector: the recall step with the vector index's search (PostgreSQL with the extension) --

#: The synthetic vectors' length: the HNSW build over 10^6 vectors is what costs (measured and
#: reported); 64 floats keep it within the full run's minutes on two cores. A real model's
#: 256 or more make each distance, and so the search, dearer.
VECTOR_DIMS = 64
#: The bench's HNSW build options: a third of the build time of tokbot's own index (pgvector's
#: defaults, m 16 and ef_construction 64: about 430 µs a vector here, so 7 minutes for 10^6),
#: a sparser graph (README, Benchmarks: the search measured with both at 10^5).
BENCH_HNSW_OPTIONS = os.environ.get("TOKBOT_BENCH_HNSW_OPTIONS", "m = 8, ef_construction = 32")
_VECTOR_MODEL = "bench/random-unit-vectors"


def _random_unit(rng: random.Random) -> list[float]:
    """A random direction: bytes from `rng` as int8 per float, scaled to length 1 (nearly
    uniform on the sphere; cheap enough for 10^6 in pure Python)."""
    raw = array("b", rng.randbytes(VECTOR_DIMS))
    norm = math.hypot(*raw) or 1.0
    return [x / norm for x in raw]


def _vector_records(
    first: int, last: int, key: ConversationKey, seed: int
) -> tuple[Iterator[tuple[object, ...]], Iterator[tuple[object, ...]]]:
    """The `embeddings` rows and the index's rows of observed messages `first`..`last`: the
    same vectors in both (float32 bytes; pgvector's binary form for COPY: length, 0, floats
    big-endian)."""
    scope = vector_index_pg.scope(key)
    made: list[tuple[int, list[float]]] = []

    def embeddings() -> Iterator[tuple[object, ...]]:
        rng = random.Random(seed)
        for row_id in range(first, last + 1):
            vector = _random_unit(rng)
            made.append((row_id, vector))
            yield ("message", row_id, _VECTOR_MODEL, VECTOR_DIMS, pack_vector(vector), 1.7e9)

    def indexed() -> Iterator[tuple[object, ...]]:
        for row_id, vector in made:
            yield ("message", row_id, scope, _VECTOR_MODEL, vector)

    return embeddings(), indexed()


def _vector_binary(vector: list[float]) -> bytes:
    return struct.pack(f">HH{len(vector)}f", len(vector), 0, *vector)


async def _fill_vectors(store: Store, index: PgVectorIndex) -> float:
    """Every observed message's vector, COPYed into `embeddings` and the index's table with
    its HNSW index dropped, which is then made again as tokbot made it (its definition read
    back; pgvector's README: build after loading, with the graph in maintenance_work_mem).
    Returns the HNSW build's seconds."""
    await index.prepare(VECTOR_DIMS)
    table = vector_index_pg.table_name(VECTOR_DIMS)
    async with store.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        (hnsw,) = (
            await conn.execute(
                text("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE :n"),
                {"n": f"ix_{table}_hnsw"},
            )
        ).all()
        await conn.execute(text(f"DROP INDEX {hnsw.indexname}"))
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.set_type_codec(
            "vector", encoder=_vector_binary, decoder=bytes, format="binary", schema="public"
        )
        for seed, (key, _count) in enumerate(_channels(0)):
            ids = (
                await conn.execute(
                    text(
                        "SELECT min(id), max(id) FROM observed_messages "
                        "WHERE platform = :p AND workspace = :w AND channel = :c"
                    ),
                    {"p": key.platform, "w": key.workspace, "c": key.channel},
                )
            ).one()
            rows, copies = _vector_records(ids[0], ids[1], key, seed)
            await raw.copy_records_to_table(
                "embeddings",
                records=rows,
                columns=("source", "row_id", "model", "dims", "vector", "created_at"),
            )
            await raw.copy_records_to_table(
                table, records=copies, columns=("source", "row_id", "scope", "model", "embedding")
            )
        await conn.execute(text("UPDATE tokbot_vector_backfill SET done = true"))  # (all in)
        await conn.execute(text("SET maintenance_work_mem = '1GB'"))
        started = time.perf_counter()
        options = f" WITH ({BENCH_HNSW_OPTIONS})" if BENCH_HNSW_OPTIONS else ""
        await conn.execute(text(hnsw.indexdef + options))
        built = time.perf_counter() - started
        await conn.execute(text(f"VACUUM ANALYZE {table}"))
        await conn.execute(text("VACUUM ANALYZE embeddings"))
    return built


async def _recall_pgvector(store: Store, big: int, runs: int) -> list[Figure]:
    """The recall step with pgvector's search at `big` vs 10^3 vectors in the channel: the
    busy channel's goes through HNSW, the quiet one's is exact (fewer than EXACT_ROWS)."""
    engine = (
        f"PostgreSQL + pgvector ({VECTOR_DIMS} floats, HNSW {BENCH_HNSW_OPTIONS or 'defaults'})"
    )
    index = await vector_index_pg.detect(store.database)
    if index is None:
        reason = "skipped: the server has no pgvector extension"
        print(f"  (pgvector {reason})")
        return [Figure("recall step with pgvector", reason, "<= 20 ms", None)]
    await index.backfilled()
    started = time.perf_counter()
    built = await _fill_vectors(store, index)
    _stored(engine, big, started)
    rng = random.Random(7)
    queries = [_random_unit(rng) for _ in QUESTIONS]
    vectors = await _vector_recall(store, _VECTOR_MODEL, VECTOR_DIMS)
    large, small = await _interleaved(_Step(store, vectors, queries), runs)
    big_key, small_key = (key for key, _ in reversed(_channels(big)))
    search = {
        key.channel: await _search_alone(store, index, key, queries) for key in (big_key, small_key)
    }
    for key in (big_key, small_key):
        await _print_plan(store, key, queries[0])
    return [
        Figure(
            f"pgvector search alone (index.nearest, 30 hits), {big:,} vs {SMALL:,} vectors, p50",
            f"{search['big'] * 1000:.1f} vs {search['small'] * 1000:.1f} ms",
            "informational",
            None,
        ),
        Figure(
            f"pgvector HNSW build, {big + SMALL:,} vectors of {VECTOR_DIMS} floats",
            f"{built:.0f} s (maintenance_work_mem 1GB; {BENCH_HNSW_OPTIONS or 'defaults'})",
            "informational",
            None,
        ),
        *_recall_figures(engine, big, large, small),
    ]


async def _search_alone(
    store: Store, index: PgVectorIndex, key: ConversationKey, queries: list[list[float]]
) -> float:
    times = []
    for _ in range(5):
        for query in queries:
            started = time.perf_counter()
            await index.nearest(key, query, model=_VECTOR_MODEL, limit=30)
            times.append(time.perf_counter() - started)
    return median(times)


async def _print_plan(store: Store, key: ConversationKey, query: list[float]) -> None:
    """The search's plan for the channel, its nodes only (what ran, what did not)."""
    params = {
        "scope": vector_index_pg.scope(key),
        "model": _VECTOR_MODEL,
        "query": vector_index_pg._vector_text(query),
        "exact": vector_index_pg.EXACT_ROWS,
        "limit": 30,
    }
    statement = vector_index_pg._nearest(VECTOR_DIMS)
    async with store.database.writing() as conn:  # (the settings are the transaction's)
        await conn.execute(vector_index_pg._SEARCH_SETTINGS, {"ef_search": "60"})
        explain = text(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {statement.text}")
        plan = (await conn.execute(explain, params)).scalars()
    nodes = [line for line in plan if "->" in line or "Execution" in line or "Buffers" in line]
    print(f"  (pgvector plan, {key.channel} channel:)", *nodes[:24], sep="\n    ")

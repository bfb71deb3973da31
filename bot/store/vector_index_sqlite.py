"""sqlite-vec as team memory's vector index on SQLite (`bot.store.vector_index`).

Loading it. sqlite-vec is a SQLite extension (the `sqlite-vec` wheel ships `vec0.so`). Where
this Python's `sqlite3` can load extensions (`Connection.enable_load_extension`, e.g. the
python:3.11-slim image's), every connection loads it as it opens: SQLAlchemy's (migrations,
`EngineDatabase`) through a "connect" hook, `SqliteDatabase`'s aiosqlite ones as they open.
A Python built without that method (pyenv's default build) can still use it when its `_sqlite3`
links the system's `libsqlite3.so.0`: SQLite's `sqlite3_auto_extension()` registers an
extension's entry point "to be invoked for each new database connection that is created"
(sqlite.org/c3ref/auto_extension.html), process-wide, so it is called through ctypes on that
library before the store opens a connection. Either way a fresh connection is then asked
`vec_version()`: if the library ctypes found is not the one `sqlite3` uses (a Python with SQLite
linked in statically), the registration went to the other copy and the check fails, so there
is no index (logged). tokbot never opens the file through a second SQLite library to get at
the extension: two copies of SQLite in one process do not see each other's POSIX locks, which
"How To Corrupt An SQLite Database File" (sqlite.org/howtocorrupt.html, 2.2.1 and 2.2.2)
lists as a way to corrupt it.

What it holds. sqlite-vec 0.1.9 has no approximate index: a vec0 query compares the query with
every vector of the partitions it reads. So the cost is bounded by what it reads: one vec0 table
per vector length (`vec_bits_<dims>`), partitioned by scope (a channel and the model that made
the vectors: `vec_scopes`, so another model's vectors are never compared) and by bucket (the
scope's vectors in the order they were indexed, `BUCKET` to a bucket). A search reads only the
scope's newest buckets: at least the newest `window` vectors (`TOKBOT_VECTOR_WINDOW`), at most
`BUCKET - 1` more. Older messages are found by the full-text index only. The vectors are binary
quantized (a bit per float: its sign), 32 times smaller than the floats, and the coarse hits
(`RESCORE` times the hits wanted, `MIN_COARSE` at least) are ordered by the exact cosine of
their stored floats, read by primary key from `embeddings` in the same statement.

Keeping it true. `add` writes in the embeddings' own transaction; triggers made with each table
drop a vector in the transaction that deletes or rewrites its `embeddings` row (a deleted
message, a `/memory forget`, an edit: migration 0011's triggers delete that row). They need
vec0 in the connection that deletes: every tokbot connection has it; an external `sqlite3`
shell without the extension gets "no such module: vec0" and its deletion fails whole (nothing
half done). A tokbot that cannot load sqlite-vec drops those triggers (else it could not delete
messages); a tokbot that can finds a table without its triggers, drops it and builds it again.
Vectors stored before the index existed are copied in the background (`_backfill`): batches of
`BACKFILL_BATCH` in `embeddings`' key order, one short write transaction each (an answer's
writes wait for one at most), the position kept in `vec_backfill`, so a restart goes on where
it stopped. Rows embedded after the index existed (`until`) were indexed by `add`."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
from sqlalchemy import Double, Integer, LargeBinary, String, event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.domain import ConversationKey
from bot.store.database import Database, Session
from bot.store.vector_index import IndexedVector, VectorIndex
from bot.store.vectors import pack_vector, unpack_vector

log = logging.getLogger(__name__)

#: Vectors to a bucket (a vec0 partition): a search reads whole buckets.
BUCKET = 1024
#: Newest vectors of a channel a search covers unless `TOKBOT_VECTOR_WINDOW` says otherwise.
DEFAULT_WINDOW = 8_192
#: Coarse (binary) hits read per hit returned, to be ordered by exact cosine; at least
#: MIN_COARSE (a bit per float ranks poorly at the very top: a small `limit` alone would miss).
RESCORE = 2
MIN_COARSE = 60
#: `embeddings` rows copied into the index per background transaction: an answer's writes wait
#: for one at most (at the 3,494 vectors/s measured under load, 18 ms).
BACKFILL_BATCH = 64
#: The library `_sqlite3` links on Linux (the auto_extension route; elsewhere it fails: no index).
LIBSQLITE = "libsqlite3.so.0"


class _Loading:
    """How sqlite-vec is loaded in this process: found once (`register`)."""

    def __init__(self) -> None:
        self.tried = False
        self.route: str | None = None  # "load_extension", "auto_extension", or None
        self.version = ""
        self.why = ""
        self.path = ""


_loading = _Loading()


def _open_library(name: str) -> Any:
    """ctypes' handle on a shared library (a function of its own, so tests can fail it)."""
    return ctypes.CDLL(name)


def register() -> str | None:
    """Make sqlite-vec available to the connections this process opens from now on; the route
    taken, or None (why: `unavailable_reason`). Call before the store's first connection."""
    if _loading.tried:
        return _loading.route
    _loading.tried = True
    try:
        import sqlite_vec  # type: ignore[import-untyped]
    except ImportError:
        _loading.why = "the sqlite-vec package is not installed"
        return None
    _loading.path = sqlite_vec.loadable_path()
    try:
        if hasattr(sqlite3.Connection, "enable_load_extension"):
            route = "load_extension"
        else:
            route = "auto_extension"
            library = _open_library(LIBSQLITE)
            entry = _open_library(_loading.path + ".so").sqlite3_vec_init
            if library.sqlite3_auto_extension(ctypes.cast(entry, ctypes.c_void_p)) != 0:
                raise OSError("sqlite3_auto_extension refused it")
        _loading.version = _check(route)
        _loading.route = route
    except (OSError, AttributeError, sqlite3.Error) as exc:
        _loading.why = f"it could not be loaded into this Python's sqlite3 ({exc})"
    return _loading.route


def _check(route: str) -> str:
    """sqlite-vec's version, asked of a new connection as tokbot's will be opened."""
    conn = sqlite3.connect(":memory:")
    try:
        if route == "load_extension":
            _load(conn)
        version: str = conn.execute("SELECT vec_version()").fetchone()[0]
        return version
    finally:
        conn.close()


def _load(conn: Any) -> None:
    """Load sqlite-vec into one sqlite3 (or aiosqlite's underlying) connection."""
    conn.enable_load_extension(True)
    try:
        conn.load_extension(_loading.path)
    finally:
        conn.enable_load_extension(False)


def unavailable_reason() -> str:
    return _loading.why or "it was not registered before the store opened"


def hook_engine(engine: AsyncEngine) -> None:
    """Load sqlite-vec into each connection of `engine` as it opens (load_extension route)."""
    if _loading.route != "load_extension":
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _load_vec(dbapi_connection: Any, _record: Any) -> None:
        # (SQLAlchemy's documented way to reach the asyncio driver's connection from a hook)
        dbapi_connection.run_async(lambda conn: conn._execute(_load, conn._conn))


def connection_hook() -> Callable[[aiosqlite.Connection], Awaitable[None]] | None:
    """For `SqliteDatabase`: what loads sqlite-vec into an aiosqlite connection as it opens."""
    if _loading.route != "load_extension":
        return None

    async def load(conn: aiosqlite.Connection) -> None:
        await conn._execute(_load, conn._conn)  # type: ignore[no-untyped-call]  # (its thread)

    return load


# -- the index ------------------------------------------------------------------------------

_SETUP = (
    "CREATE TABLE IF NOT EXISTS vec_scopes (id INTEGER PRIMARY KEY, model TEXT NOT NULL, "
    "dims INTEGER NOT NULL, platform TEXT NOT NULL, workspace TEXT NOT NULL, "
    "channel TEXT NOT NULL, next_seq INTEGER NOT NULL, "
    "UNIQUE (model, dims, platform, workspace, channel))",
    "CREATE TABLE IF NOT EXISTS vec_backfill (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "until REAL NOT NULL, after_source TEXT NOT NULL, after_row_id INTEGER NOT NULL, "
    "done INTEGER NOT NULL)",
)
_TABLES = text(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'vec\\_bits\\_%' "
    "ESCAPE '\\' AND sql LIKE 'CREATE VIRTUAL TABLE%'"
).columns(name=String)
_TRIGGERS = text(
    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'vec\\_bits\\_%' "
    "ESCAPE '\\'"
).columns(name=String)
_HAS_BACKFILL = text(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'vec_backfill'"
).columns(name=String)
_RESTART_BACKFILL = text(
    "INSERT INTO vec_backfill (id, until, after_source, after_row_id, done) "
    "VALUES (1, :now, '', 0, 0) ON CONFLICT (id) DO UPDATE SET until = :now, "
    "after_source = '', after_row_id = 0, done = 0"
)
_START_BACKFILL = text(
    "INSERT INTO vec_backfill (id, until, after_source, after_row_id, done) "
    "VALUES (1, :now, '', 0, 0) ON CONFLICT (id) DO NOTHING"
)
_BACKFILL_STATE = text(
    "SELECT until, after_source, after_row_id, done FROM vec_backfill WHERE id = 1"
).columns(until=Double, after_source=String, after_row_id=Integer, done=Integer)
#: The next batch to copy, with each row's channel (by primary key: the message, or the turn's
#: conversation); rows whose message or turn is gone are skipped (their own deletion is due).
_BACKFILL_ROWS = text(
    "SELECT e.source, e.row_id, e.model, e.vector, e.created_at, "
    "coalesce(m.platform, c.platform) AS platform, coalesce(m.workspace, c.workspace) AS "
    "workspace, coalesce(m.channel, c.channel) AS channel FROM embeddings e "
    "LEFT JOIN observed_messages m ON e.source = 'message' AND m.id = e.row_id "
    "LEFT JOIN turns t ON e.source = 'turn' AND t.id = e.row_id "
    "LEFT JOIN conversations c ON c.id = t.conversation_id "
    "WHERE (e.source, e.row_id) > (:after_source, :after_row_id) "
    "ORDER BY e.source, e.row_id LIMIT :limit"
).columns(
    source=String,
    row_id=Integer,
    model=String,
    vector=LargeBinary,
    created_at=Double,
    platform=String,
    workspace=String,
    channel=String,
)
_BACKFILL_MOVE = text(
    "UPDATE vec_backfill SET after_source = :source, after_row_id = :row_id, done = :done "
    "WHERE id = 1"
)
_ANY_AFTER = text(
    "SELECT 1 AS one FROM embeddings WHERE (source, row_id) > (:source, :row_id) LIMIT 1"
).columns(one=Integer)
_NEXT_SEQ = text(
    "INSERT INTO vec_scopes (model, dims, platform, workspace, channel, next_seq) "
    "VALUES (:model, :dims, :platform, :workspace, :channel, 1) "
    "ON CONFLICT (model, dims, platform, workspace, channel) DO UPDATE SET "
    "next_seq = next_seq + 1"
)
_SCOPE = (
    "model = :model AND dims = :dims AND platform = :platform AND workspace = :workspace "
    "AND channel = :channel"
)


def _position(state: Any) -> dict[str, Any]:
    return {"source": state.after_source, "row_id": state.after_row_id}


async def _anything_after(conn: Session, state: Any) -> bool:
    """Whether `embeddings` has rows past the copy's position (none: nothing to copy)."""
    return bool((await conn.execute(_ANY_AFTER, _position(state))).all())


def _table(dims: int) -> str:
    return f"vec_bits_{dims}"


def _rowid(source: str, row_id: int) -> int:
    """The vec0 rowid of an `embeddings` row: its id and a bit for its source."""
    return row_id * 2 + (source == "turn")


def _create(dims: int) -> list[str]:
    """A table for vectors of `dims` floats and its triggers: a vector leaves the index in
    the transaction that deletes or rewrites its `embeddings` row."""
    table = _table(dims)
    rowid = "old.row_id * 2 + (old.source = 'turn')"
    forget = f"BEGIN DELETE FROM {table} WHERE rowid = {rowid}; END"
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0(scope INTEGER PARTITION KEY, "
        f"bucket INTEGER PARTITION KEY, bits BIT[{dims}], chunk_size={BUCKET})",
        f"CREATE TRIGGER IF NOT EXISTS {table}_delete AFTER DELETE ON embeddings "
        f"WHEN old.dims = {dims} {forget}",
        f"CREATE TRIGGER IF NOT EXISTS {table}_update AFTER UPDATE ON embeddings "
        f"WHEN old.dims = {dims} {forget}",
    ]


def _insert(dims: int) -> Any:
    return text(
        f"INSERT INTO {_table(dims)} (rowid, scope, bucket, bits) SELECT :rowid, id, "
        f"(next_seq - 1) / {BUCKET}, vec_quantize_binary(:vector) FROM vec_scopes "
        f"WHERE {_SCOPE}"
    )


def _delete(dims: int) -> Any:
    return text(f"DELETE FROM {_table(dims)} WHERE rowid = :rowid")


def _nearest(dims: int) -> Any:
    """The `limit` nearest by exact cosine among the `k` nearest by Hamming distance in the
    scope's newest buckets (at least its newest `window` vectors)."""
    return text(
        "WITH scope AS (SELECT id, max(next_seq - :window, 0) / "
        f"{BUCKET} AS first FROM vec_scopes WHERE {_SCOPE}), "
        f"coarse AS (SELECT rowid FROM {_table(dims)} WHERE bits MATCH "
        "vec_quantize_binary(:query) AND k = :k AND scope = (SELECT id FROM scope) "
        "AND bucket >= (SELECT first FROM scope)) "
        "SELECT e.source, e.row_id FROM coarse JOIN embeddings e "
        "ON e.source = CASE coarse.rowid % 2 WHEN 1 THEN 'turn' ELSE 'message' END "
        "AND e.row_id = coarse.rowid / 2 "
        "WHERE e.model = :model AND e.dims = :dims AND EXISTS (SELECT 1 FROM scope) "
        "ORDER BY vec_distance_cosine(e.vector, :query) LIMIT :limit"
    ).columns(source=String, row_id=Integer)


class SqliteVecIndex:
    """Team memory's vectors in sqlite-vec's vec0 tables (see the module's doc)."""

    def __init__(self, db: Database, version: str, window: int) -> None:
        self._db = db
        self.name = f"sqlite-vec {version.removeprefix('v')}"
        self.window = window
        self._tables: set[int] = set()
        self._unindexable: set[int] = set()
        self._creating: dict[int, list[Any]] = {}
        self._nearest: dict[int, Any] = {}
        self._writes: dict[int, tuple[Any, Any]] = {}
        self.backfill: asyncio.Task[None] | None = None
        self.copied = 0
        self._copy_failed = False

    async def prepare(self) -> None:
        """Tables made, tables left without their triggers rebuilt, backfill started."""
        async with self._db.writing() as conn:
            for statement in _SETUP:
                await conn.execute(text(statement))
            tables = {r.name for r in (await conn.execute(_TABLES)).all()}
            triggers = {r.name for r in (await conn.execute(_TRIGGERS)).all()}
            kept = (await conn.execute(_BACKFILL_STATE)).one_or_none() is not None
            wanted = {f"{t}_{event}" for t in tables for event in ("delete", "update")}
            # A tokbot without sqlite-vec ran (it dropped the triggers and the copy's position):
            # deletions and vectors since are not in the index. Build it again.
            rebuilt = bool(tables) and not (kept and wanted <= triggers)
            for table in sorted(tables):
                if rebuilt:
                    await conn.execute(text(f"DROP TABLE {table}"))
                else:
                    self._tables.add(int(table.removeprefix("vec_bits_")))
            now = {"now": time.time()}
            await conn.execute(_RESTART_BACKFILL if rebuilt else _START_BACKFILL, now)
            state = (await conn.execute(_BACKFILL_STATE)).one()
            done = bool(state.done)
            if not done and not await _anything_after(conn, state):
                await conn.execute(_BACKFILL_MOVE, _position(state) | {"done": 1})
                done = True
        if rebuilt:
            log.warning("team memory: the vector index missed deletions; rebuilding it")
        if not done:
            self.backfill = asyncio.create_task(self._backfill(), name="vector index backfill")

    async def add(self, conn: Session, vectors: list[IndexedVector]) -> None:
        statements: list[tuple[Any, dict[str, Any]]] = []
        indexable = {d: await self._ensure_table(conn, d) for d in {len(v.vector) for v in vectors}}
        for vector in vectors:
            dims = len(vector.vector)
            if not indexable[dims]:
                continue
            insert, delete = self._write_statements(dims)
            channel = vector.channel
            scope = {
                "model": vector.model,
                "dims": dims,
                "platform": channel.platform,
                "workspace": channel.workspace,
                "channel": channel.channel,
            }
            rowid = {"rowid": _rowid(vector.source, vector.row_id)}
            statements += [
                (delete, rowid),  # (vec0 has no INSERT OR REPLACE)
                (_NEXT_SEQ, scope),
                (insert, scope | rowid | {"vector": pack_vector(vector.vector)}),
            ]
        if statements:
            await conn.execute_each(statements)

    def _write_statements(self, dims: int) -> tuple[Any, Any]:
        found = self._writes.get(dims)
        if found is None:
            found = self._writes[dims] = (_insert(dims), _delete(dims))
        return found

    async def _ensure_table(self, conn: Session, dims: int) -> bool:
        """Whether vectors of `dims` floats can be indexed, their table made if need be (in the
        writing transaction `conn`). A table is known made only once read back committed
        (`prepare`, `_table_exists`): this transaction may yet roll back, so until then each
        call says again to make it if it does not exist (a no-op)."""
        if dims in self._tables:
            return True
        if dims % 8 or dims in self._unindexable:
            if dims not in self._unindexable:
                self._unindexable.add(dims)
                log.warning("team memory: %d-float vectors are not indexed (not whole bytes)", dims)
            return False
        made = self._creating.get(dims)
        if made is None:
            made = self._creating[dims] = [text(statement) for statement in _create(dims)]
        for statement in made:
            await conn.execute(statement)
        return True

    async def nearest(
        self, key: ConversationKey, query: list[float], *, model: str, limit: int
    ) -> list[tuple[str, int]]:
        dims = len(query)
        if dims not in self._tables and not await self._table_exists(dims):
            return []
        stmt = self._nearest.get(dims)
        if stmt is None:
            stmt = self._nearest[dims] = _nearest(dims)
        channel = key.channel_key
        params = {
            "model": model,
            "dims": dims,
            "platform": channel.platform,
            "workspace": channel.workspace,
            "channel": channel.channel,
            "window": self.window,
            "query": pack_vector(query),
            "k": min(4096, max(limit * RESCORE, MIN_COARSE)),  # (vec0's largest k)
            "limit": limit,
        }
        async with self._db.reading() as conn:
            rows = (await conn.execute(stmt, params)).all()
        return [(row.source, row.row_id) for row in rows]

    async def _table_exists(self, dims: int) -> bool:
        """Whether another process made the table for `dims` since this one looked."""
        async with self._db.reading() as conn:
            tables = {r.name for r in (await conn.execute(_TABLES)).all()}
        if _table(dims) in tables:
            self._tables.add(dims)
        return dims in self._tables

    def describe(self) -> str:
        state = "copying vectors stored before it" if self.backfill else "up to date"
        if self._copy_failed:
            state = "copying older vectors failed (logged; it resumes at the next start)"
        return (
            f"vector index {self.name} ({_loading.route}): per channel and model, the newest "
            f"{self.window:,} vectors (binary-quantized search, reordered by exact cosine); "
            f"older messages by full text only; {state}"
        )

    async def _backfill(self) -> None:
        """Copy `embeddings` rows stored before the index existed, a batch a transaction."""
        try:
            while not await self._copy_batch():
                await asyncio.sleep(0)  # (let answers' statements through between batches)
            log.info("team memory: vector index has the %d vectors stored before it", self.copied)
        except asyncio.CancelledError:
            raise
        except Exception:  # (recall still works, the index covers less: say so)
            self._copy_failed = True
            log.exception("team memory: copying vectors into the vector index failed")
        finally:
            self.backfill = None

    async def _copy_batch(self) -> bool:
        """One batch; whether the copy is done."""
        async with self._db.writing() as conn:
            state = (await conn.execute(_BACKFILL_STATE)).one()
            if state.done:
                return True
            params = {
                "after_source": state.after_source,
                "after_row_id": state.after_row_id,
                "limit": BACKFILL_BATCH,
            }
            rows = (await conn.execute(_BACKFILL_ROWS, params)).all()
            vectors = [
                IndexedVector(
                    r.source,
                    r.row_id,
                    r.model,
                    ConversationKey(r.platform, r.workspace, r.channel),
                    list(unpack_vector(r.vector)),
                )
                for r in rows
                if r.platform is not None and r.created_at <= state.until
            ]
            await self.add(conn, vectors)
            self.copied += len(vectors)
            done = len(rows) < BACKFILL_BATCH
            where = {"source": rows[-1].source, "row_id": rows[-1].row_id} if rows else None
            await conn.execute(_BACKFILL_MOVE, (where or _position(state)) | {"done": int(done)})
        return done

    async def close(self) -> None:
        if self.backfill is not None:
            self.backfill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.backfill


async def detect(db: Database, *, window: int = DEFAULT_WINDOW) -> VectorIndex | None:
    """sqlite-vec's index on this database, made ready; None where sqlite-vec is not loaded
    (see `register`), after dropping triggers a tokbot with it made (else this one could not
    delete a message)."""
    if register() is None:
        log.warning("team memory: no sqlite-vec vector index: %s", unavailable_reason())
        await _drop_triggers(db)
        return None
    index = SqliteVecIndex(db, _loading.version, window)
    await index.prepare()
    return index


def probe(window: int) -> str:
    """What `detect` would use, changing nothing (for `tokbot doctor`)."""
    if register() is None:
        return f"no vector index ({unavailable_reason()})"
    return (
        f"vector index sqlite-vec {_loading.version.removeprefix('v')} ({_loading.route}): per "
        f"channel and model, the newest {window:,} vectors; older messages by full text only; "
        "tokbot run brings it up to date at start"
    )


async def _drop_triggers(db: Database) -> None:
    """Triggers dropped, and the copy's position (so a tokbot with sqlite-vec rebuilds)."""
    async with db.writing() as conn:
        triggers = [r.name for r in (await conn.execute(_TRIGGERS)).all()]
        for name in triggers:
            await conn.execute(text(f'DROP TRIGGER IF EXISTS "{name}"'))
        if (await conn.execute(_HAS_BACKFILL)).all():
            await conn.execute(text("DELETE FROM vec_backfill"))
    if triggers:
        log.warning(
            "team memory: vector index triggers dropped (sqlite-vec missing); a tokbot with "
            "sqlite-vec will rebuild the index"
        )

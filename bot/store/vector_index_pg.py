"""pgvector as team memory's vector index on PostgreSQL (see `bot.store.vector_index`).

Detected at start: the `vector` extension installed in the database is used; one the server
offers but the database lacks is created (`CREATE EXTENSION`: pgvector is not a trusted
extension, so this needs a superuser; on failure the log says what an admin should run, and
recall goes on without an index). pgvector older than 0.8 (no iterative scans) is not used.
Nothing here is an Alembic migration, because whether the server has pgvector is known only when
tokbot connects: the tables are made here, under an advisory lock (replicas starting together
would otherwise race on `CREATE ... IF NOT EXISTS`).

One table per vector length, `tokbot_vectors_<dims>` (HNSW indexes a fixed length): the
`embeddings` row it copies (`source`, `row_id`, a foreign key ON DELETE CASCADE, so migration
0011's triggers, deleting a message's vector, delete its copy in the same transaction), the
channel (`scope`: platform, workspace and channel joined by US), the model, the vector; an HNSW
index with cosine distance, and a btree on (scope, model).

The search, one statement: a channel with fewer than EXACT_ROWS vectors of the model is read
through the btree and sorted by exact distance (under 1 ms for 10^3; HNSW filters *after*
walking the graph, so a small channel among millions of vectors would get few or no hits from
it); a bigger one is searched through HNSW with iterative scans (pgvector 0.8: the graph is
walked further until `limit` of the channel's vectors are found, up to hnsw.max_scan_tuples).
The choice is made by counting at most EXACT_ROWS of the channel's btree entries, and each
branch is written so only its index can serve it (`+ 0` on the distance, `|| ''` on the filter),
so the plan the server caches for the statement cannot pick the wrong one for a channel (and no
sequential scan, which the planner prefers for a small table). The limit of this: a channel with
more than EXACT_ROWS vectors but under about limit / 20 000 of all the table's (e.g. 5 000 of
10^7) may get fewer than `limit` hits; the full-text candidates still come.

Vectors stored before a table existed are copied in by a background task, in batches of
BACKFILL_BATCH embeddings rows (their primary key order), each in a transaction of its own that
records how far it got (`tokbot_vector_backfill`), so it resumes after a restart and replicas
share the work; answers never wait for it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot.domain import ConversationKey
from bot.store.database import Database, Session
from bot.store.vector_index import IndexedVector
from bot.store.vectors import unpack_vector

log = logging.getLogger(__name__)

#: Advisory lock held while creating the extension or tables ("tokvec" in ASCII; the
#: migrations' is "tokbot").
DDL_LOCK_KEY = 0x746F6B766563
#: A channel with fewer vectors of the model than this is searched exactly (btree + sort).
EXACT_ROWS = 2_000
#: HNSW's candidate list (pgvector's default is 40): at least twice the hits asked for.
EF_SEARCH = 40
#: pgvector's `vector` type is indexed by HNSW up to this many floats.
MAX_DIMS = 2_000
#: Embeddings rows copied per backfill transaction, and the pause between two (seconds).
BACKFILL_BATCH = 500
BACKFILL_PAUSE = 0.02

_SEPARATOR = "\x1f"
_INSTALLED = text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
_AVAILABLE = text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
_LOCK = text(f"SELECT pg_advisory_xact_lock({DDL_LOCK_KEY})")
_TABLE_EXISTS = text("SELECT to_regclass(:name) IS NOT NULL")
_PROGRESS_TABLE = text(
    "CREATE TABLE IF NOT EXISTS tokbot_vector_backfill (id integer PRIMARY KEY CHECK (id = 1), "
    "source varchar(8) NOT NULL DEFAULT '', row_id bigint NOT NULL DEFAULT 0, "
    "done boolean NOT NULL DEFAULT false)"
)
# (first start: nothing to copy if nothing is stored yet)
_PROGRESS_ROW = text(
    "INSERT INTO tokbot_vector_backfill (id, done) "
    "VALUES (1, NOT EXISTS (SELECT 1 FROM embeddings)) ON CONFLICT DO NOTHING"
)
_PROGRESS_DONE = text("SELECT done FROM tokbot_vector_backfill WHERE id = 1")
# (a new table: every stored vector is walked again, the others' copies skipped)
_PROGRESS_RESTART = text(
    "UPDATE tokbot_vector_backfill SET source = '', row_id = 0, done = false WHERE id = 1"
)
_PROGRESS_NOW = text("SELECT source, row_id, done FROM tokbot_vector_backfill WHERE id = 1")
_PROGRESS = text(_PROGRESS_NOW.text + " FOR UPDATE")
_PROGRESS_SAVE = text(
    "UPDATE tokbot_vector_backfill SET source = :source, row_id = :row_id, done = :done "
    "WHERE id = 1"
)
# The next embeddings rows after the cursor, with their channels, locked against deletion (KEY
# SHARE) until their copies are written, so no copy outlives its row.
_BACKFILL_ROWS = text(
    "SELECT e.source, e.row_id, e.model, e.dims, e.vector, "
    "coalesce(o.platform, c.platform) AS platform, "
    "coalesce(o.workspace, c.workspace) AS workspace, "
    "coalesce(o.channel, c.channel) AS channel FROM embeddings e "
    "LEFT JOIN observed_messages o ON e.source = 'message' AND o.id = e.row_id "
    "LEFT JOIN turns t ON e.source = 'turn' AND t.id = e.row_id "
    "LEFT JOIN conversations c ON c.id = t.conversation_id "
    "WHERE (e.source, e.row_id) > (:source, :row_id) ORDER BY e.source, e.row_id "
    "LIMIT :batch FOR KEY SHARE OF e"
)
_DIMS_AHEAD = text(
    "SELECT DISTINCT dims FROM (SELECT e.dims FROM embeddings e "
    "WHERE (e.source, e.row_id) > (:source, :row_id) ORDER BY e.source, e.row_id "
    "LIMIT :batch) x"
)


def table_name(dims: int) -> str:
    return f"tokbot_vectors_{int(dims)}"


def scope(key: ConversationKey) -> str:
    """The channel's key as one value (the btree's first column)."""
    return _SEPARATOR.join((key.platform, key.workspace, key.channel))


def _vector_text(vector: list[float]) -> str:
    """pgvector's text form; sent as text and cast (asyncpg has no codec for the type)."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def _create_table(dims: int) -> list[str]:
    name = table_name(dims)
    return [
        f"CREATE TABLE IF NOT EXISTS {name} (source varchar(8) NOT NULL, row_id bigint NOT NULL, "
        f"scope text NOT NULL, model varchar(255) NOT NULL, embedding vector({dims}) NOT NULL, "
        f"CONSTRAINT pk_{name} PRIMARY KEY (source, row_id), "
        f"CONSTRAINT fk_{name}_embeddings FOREIGN KEY (source, row_id) "
        "REFERENCES embeddings (source, row_id) ON DELETE CASCADE)",
        f"CREATE INDEX IF NOT EXISTS ix_{name}_scope ON {name} (scope, model)",
        f"CREATE INDEX IF NOT EXISTS ix_{name}_hnsw ON {name} "
        "USING hnsw (embedding vector_cosine_ops)",
    ]


def _insert(dims: int, on_conflict: str) -> Any:
    return text(
        f"INSERT INTO {table_name(dims)} (source, row_id, scope, model, embedding) "
        "VALUES (:source, :row_id, CAST(:scope AS text), :model, "
        f"CAST(CAST(:embedding AS text) AS vector({dims}))) "
        f"ON CONFLICT (source, row_id) {on_conflict}"
    )


@functools.cache
def _upsert(dims: int) -> Any:
    return _insert(
        dims,
        "DO UPDATE SET scope = excluded.scope, model = excluded.model, "
        "embedding = excluded.embedding",
    )


@functools.cache
def _copy(dims: int) -> Any:
    """The backfill's insert: a copy written meanwhile by `add` is newer, and kept."""
    return _insert(dims, "DO NOTHING")


@functools.cache
def _forget(dims: int) -> Any:
    """A row's copy in a table of another length (its vector was remade by a model with
    another length: the `embeddings` row was updated, not deleted, so no cascade)."""
    return text(f"DELETE FROM {table_name(dims)} WHERE source = :source AND row_id = :row_id")


@functools.cache
def _nearest(dims: int) -> Any:
    """One statement for both ways (see the module's doc): `few` counts at most :exact of the
    channel's btree entries; each branch's one-time filter runs only one of them."""
    name = table_name(dims)
    query = f"CAST(CAST(:query AS text) AS vector({dims}))"
    return text(
        "WITH few AS (SELECT count(*) < :exact AS yes FROM (SELECT 1 FROM "
        f"{name} WHERE scope = :scope AND model = :model LIMIT :exact) x) "
        f"(SELECT source, row_id FROM {name} WHERE scope = :scope AND model = :model "
        f"AND (SELECT yes FROM few) ORDER BY (embedding <=> {query}) + 0 LIMIT :limit) "
        f"UNION ALL (SELECT source, row_id FROM {name} WHERE scope || '' = :scope "
        f"AND model || '' = :model AND NOT (SELECT yes FROM few) "
        f"ORDER BY embedding <=> {query} LIMIT :limit)"
    )


# For the reading transaction only (`is_local`). Relaxed order: recall re-orders the hits by
# their stored vectors anyway, and pgvector's README says it finds more. No sequential scan:
# the big-channel branch is for channels of EXACT_ROWS vectors or more, where reading the table
# costs more than the graph, whatever the planner estimates for a small table. No parallel
# workers: the plan cached for a busy channel's estimate sorts the exact branch in parallel,
# and launching the workers (before the branch's one-time filter stops it) cost 20-30 ms here.
# A custom plan each time (planning: about 1 ms): in the generic plan asyncpg's prepared
# statement gets after five runs, the query's text-to-vector cast is not folded into a constant
# and the exact branch casts it again for every row it sorts (10^3 rows: 12-16 ms, not 2).
# No JIT: with 10^6 vectors the (unexecuted) exact branch's estimated cost passes jit_above_cost
# and compiling the statement's expressions took 25-340 ms of a search whose own work is 2 ms.
_SEARCH_SETTINGS = text(
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
    "set_config('hnsw.ef_search', :ef_search, true), "
    "set_config('enable_seqscan', 'off', true), "
    "set_config('max_parallel_workers_per_gather', '0', true), "
    "set_config('plan_cache_mode', 'force_custom_plan', true), "
    "set_config('jit', 'off', true)"
)


class PgVectorIndex:
    """pgvector's HNSW indexes, one table per vector length (see the module's doc)."""

    def __init__(self, db: Database, version: str) -> None:
        self._db = db
        self.version = version
        self.name = f"pgvector {version}"
        self._tables: set[int] = set()
        self._too_long_logged = False
        self._backfill: asyncio.Task[None] | None = None
        self._pending_dims: list[int] = []
        self._again = False

    # -- tables ---------------------------------------------------------------------------

    async def _known(self, conn: Session, dims: int) -> bool:
        """Whether `dims`'s table exists (another replica may have made it)."""
        if dims in self._tables:
            return True
        exists = bool((await conn.execute(_TABLE_EXISTS, {"name": table_name(dims)})).scalar_one())
        if exists:
            self._tables.add(dims)
        return exists

    async def prepare(self, dims: int) -> None:
        """Create `dims`'s table in a transaction of its own (not inside a writer's: creating a
        table that references `embeddings` waits for its writers); a new one has the backfill
        walk the stored vectors again."""
        if dims > MAX_DIMS:
            self._too_long(dims)
            return
        async with self._db.writing() as conn:
            await conn.execute(_LOCK)
            if await self._known(conn, dims):
                return
            for statement in _create_table(dims):
                await conn.execute(text(statement))
            await conn.execute(_PROGRESS_RESTART)
        self._tables.add(dims)
        log.info("team memory: created the pgvector table %s", table_name(dims))

    def _too_long(self, dims: int) -> None:
        if not self._too_long_logged:
            self._too_long_logged = True
            log.warning(
                "team memory: %d-float vectors are longer than pgvector's HNSW indexes (%d); "
                "recall orders full-text candidates by them instead",
                dims,
                MAX_DIMS,
            )

    # -- VectorIndex ----------------------------------------------------------------------

    async def add(self, conn: Session, vectors: list[IndexedVector]) -> None:
        by_dims: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for v in vectors:
            by_dims[len(v.vector)].append(
                {
                    "source": v.source,
                    "row_id": v.row_id,
                    "scope": scope(v.channel),
                    "model": v.model,
                    "embedding": _vector_text(v.vector),
                }
            )
        for dims in by_dims:
            if dims > MAX_DIMS:
                self._too_long(dims)
        new = [dims for dims in by_dims if dims <= MAX_DIMS and not await self._known(conn, dims)]
        for dims, rows in by_dims.items():
            if dims in self._tables:
                await conn.execute(_upsert(dims), rows)
            keys = [{"source": row["source"], "row_id": row["row_id"]} for row in rows]
            for other in self._tables - {dims}:
                await conn.execute(_forget(other), keys)
        if new:  # (made after this transaction; the backfill then copies these in)
            self._start(new)

    async def nearest(
        self, key: ConversationKey, query: list[float], *, model: str, limit: int
    ) -> list[tuple[str, int]]:
        dims = len(query)
        if limit <= 0 or dims > MAX_DIMS:
            return []
        params = {
            "scope": scope(key.channel_key),
            "model": model,
            "query": _vector_text(query),
            "exact": EXACT_ROWS,
            "limit": limit,
        }
        # A transaction, though it only reads: the settings are the transaction's own
        # (set_config's is_local), and `reading` runs each statement on its own on PostgreSQL.
        async with self._db.writing() as conn:
            if not await self._known(conn, dims):
                return []
            await conn.execute(_SEARCH_SETTINGS, {"ef_search": str(max(EF_SEARCH, 2 * limit))})
            rows = (await conn.execute(_nearest(dims), params)).all()
        return [(row.source, int(row.row_id)) for row in rows]

    def describe(self) -> str:
        tables = ", ".join(table_name(d) for d in sorted(self._tables)) or "none yet"
        return (
            f"pgvector {self.version} (HNSW, cosine; channels under {EXACT_ROWS} vectors "
            f"searched exactly): tables {tables}, made at start, not by Alembic"
        )

    # -- backfill -------------------------------------------------------------------------

    def _start(self, new_dims: list[int] | None = None) -> None:
        """Run the backfill (after creating `new_dims`' tables), or have the running one go
        round again when it ends."""
        if self._backfill is not None and not self._backfill.done():
            self._again = True
            self._pending_dims += new_dims or []
            return
        self._pending_dims = list(new_dims or [])
        self._backfill = asyncio.create_task(self._run_backfill(), name="pgvector-backfill")

    async def backfilled(self) -> None:
        """Wait for the background copy to finish (tests, benchmarks)."""
        while self._backfill is not None and not self._backfill.done():
            await asyncio.shield(self._backfill)

    async def close(self) -> None:
        """Stop the background copy (it resumes where it got to, next start)."""
        task, self._backfill = self._backfill, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run_backfill(self) -> None:
        try:
            while True:
                self._again = False
                for dims in self._pending_dims:
                    await self.prepare(dims)
                self._pending_dims = []
                copied = 0
                while (done := await self.backfill_batch()) is not None:
                    copied += done
                    await asyncio.sleep(BACKFILL_PAUSE)
                if copied:
                    log.info("team memory: %d stored vectors copied into pgvector", copied)
                if not self._again:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # (the next start resumes where it got to)
            log.warning("team memory: copying stored vectors into pgvector stopped: %s", exc)

    async def backfill_batch(self) -> int | None:
        """Copy the next BACKFILL_BATCH stored vectors (creating tables for lengths not seen
        yet first); how many were read, None when there were none left."""
        async with self._db.reading() as conn:
            progress = (await conn.execute(_PROGRESS_NOW)).one()
            if progress.done:
                return None
            ahead = {"source": progress.source, "row_id": progress.row_id, "batch": BACKFILL_BATCH}
            lengths = (await conn.execute(_DIMS_AHEAD, ahead)).scalars()
        for dims in lengths:
            if dims <= MAX_DIMS and dims not in self._tables:
                await self.prepare(dims)
        async with self._db.writing() as conn:
            progress = (await conn.execute(_PROGRESS)).one()  # (replicas take turns here)
            if progress.done:
                return None
            cursor = {"source": progress.source, "row_id": progress.row_id}
            rows = (await conn.execute(_BACKFILL_ROWS, cursor | {"batch": BACKFILL_BATCH})).all()
            by_dims: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for r in rows:
                if r.dims in self._tables and r.channel is not None:
                    by_dims[r.dims].append(
                        {
                            "source": r.source,
                            "row_id": r.row_id,
                            "scope": _SEPARATOR.join((r.platform, r.workspace, r.channel)),
                            "model": r.model,
                            "embedding": _vector_text(list(unpack_vector(r.vector))),
                        }
                    )
            for dims, copies in by_dims.items():
                await conn.execute(_copy(dims), copies)
            last = rows[-1] if rows else None
            await conn.execute(
                _PROGRESS_SAVE,
                {
                    "source": last.source if last else progress.source,
                    "row_id": last.row_id if last else progress.row_id,
                    "done": len(rows) < BACKFILL_BATCH,
                },
            )
        return len(rows) if rows else None


async def detect(db: Database) -> PgVectorIndex | None:
    """pgvector if this database has it or may create it (see the module's doc), its tables for
    the lengths already known made, and the copy of vectors stored before it started."""
    async with db.reading() as conn:
        installed = (await conn.execute(_INSTALLED)).scalar_one_or_none()
        available = (await conn.execute(_AVAILABLE)).scalar_one_or_none()
    if installed is None and available is None:
        log.info("team memory: this PostgreSQL server has no pgvector extension")
        return None
    try:
        async with db.writing() as conn:
            await conn.execute(_LOCK)
            if installed is None:
                await conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
                installed = (await conn.execute(_INSTALLED)).scalar_one()
            await conn.execute(_PROGRESS_TABLE)
            await conn.execute(_PROGRESS_ROW)
            copied = bool((await conn.execute(_PROGRESS_DONE)).scalar_one())
    except DBAPIError as exc:
        log.warning(
            "team memory: pgvector %s is on this server but tokbot may not set it up (%s); "
            "an admin can run `CREATE EXTENSION vector;` in this database (and grant tokbot's "
            "role CREATE on its schema), then restart tokbot. Recall goes on without it.",
            available,
            str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__,
        )
        return None
    if _older_than_08(str(installed)):
        log.warning(
            "team memory: pgvector %s is older than 0.8 (no iterative index scans, which a "
            "channel's search needs); an admin can run `ALTER EXTENSION vector UPDATE;` after "
            "installing a newer pgvector. Recall goes on without it.",
            installed,
        )
        return None
    index = PgVectorIndex(db, str(installed))
    if not copied:
        index._start()
    return index


async def probe(db: Database) -> str:
    """What `detect` would use, changing nothing (for `tokbot doctor`)."""
    async with db.reading() as conn:
        installed = (await conn.execute(_INSTALLED)).scalar_one_or_none()
        available = (await conn.execute(_AVAILABLE)).scalar_one_or_none()
    if installed is not None and _older_than_08(str(installed)):
        return (
            f"no vector index (pgvector {installed} is older than 0.8: after installing a newer "
            "one, `ALTER EXTENSION vector UPDATE;`)"
        )
    if installed is not None:
        return (
            f"pgvector {installed} (HNSW, cosine; channels under {EXACT_ROWS} vectors searched "
            "exactly); tokbot run makes its tables at start"
        )
    if available is not None:
        return (
            f"pgvector {available} is on the server, not in this database: tokbot run creates it "
            "at start if its role may (a superuser), else an admin runs `CREATE EXTENSION vector;`"
        )
    return "no vector index (this PostgreSQL server has no pgvector extension)"


def _older_than_08(version: str) -> bool:
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False  # (a build of its own naming: let the search say whether it works)
    return (major, minor) < (0, 8)

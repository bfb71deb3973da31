"""Embeddings of kept messages and people's turns (migration 0011): the queue of rows waiting
for a vector, writing vectors, and reading them back by primary key.

Every read here goes through a primary key or the queue's own order: the embedder takes the
oldest queue entries, a recall reads the vectors of the candidates it already has. Nothing
reads a channel's history."""

from __future__ import annotations

import asyncio
import logging
import math
import operator
import sys
import time
from array import array
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.domain import ConversationKey
from bot.store import vector_index
from bot.store.database import Database
from bot.store.models import (
    ConversationRow,
    EmbeddingQueueRow,
    EmbeddingRow,
    ObservedMessageRow,
    TurnRow,
    UsageRecordRow,
)

log = logging.getLogger(__name__)

#: The `usage_records` commands of team memory's own TokModel requests (shown in /usage).
MEMORY_COMMANDS = ("embed", "rerank")


def pack_vector(vector: list[float]) -> bytes:
    """Little-endian float32 bytes (4 per float)."""
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack_vector(data: bytes) -> array[float]:
    packed = array("f")
    packed.frombytes(data)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed


def unit(vector: list[float]) -> list[float]:
    """`vector` scaled to length 1 (a zero vector stays as it is)."""
    norm = math.hypot(*vector)
    return [x / norm for x in vector] if norm else list(vector)


def similarity(a: array[float] | list[float], b: array[float] | list[float]) -> float:
    """Cosine similarity of two unit vectors (stored vectors are: see `VectorStore.store`);
    0 for vectors of different lengths."""
    if len(a) != len(b):
        return 0.0
    return float(sum(map(operator.mul, a, b)))


@dataclass(frozen=True)
class PendingText:
    """A queued row to embed: its queue entry, which row, its channel, and its text (None:
    the row is gone, the entry is only to be removed)."""

    queue_id: int
    source: str
    row_id: int
    channel: ConversationKey | None
    content: str | None


#: Seconds a queue entry stays claimed by the embedder that took it (another replica takes it
#: after, e.g. when that one crashed): longer than a TokModel request with its retries.
CLAIM_SECONDS = 300.0


def _claim(dialect: str) -> Any:
    """Claim the oldest unclaimed (or long-claimed) queue entries; PostgreSQL skips rows
    another replica is claiming at the same moment."""
    claimable = (
        select(EmbeddingQueueRow.id)
        .where(
            or_(
                EmbeddingQueueRow.claimed_until.is_(None),
                EmbeddingQueueRow.claimed_until < bindparam("now"),
            )
        )
        .order_by(EmbeddingQueueRow.id)
        .limit(bindparam("limit"))
    )
    if dialect == "postgresql":
        claimable = claimable.with_for_update(skip_locked=True)
    return (
        update(EmbeddingQueueRow)
        .where(EmbeddingQueueRow.id.in_(claimable.scalar_subquery()))
        .values(claimed_until=bindparam("until"))
        .returning(EmbeddingQueueRow.id, EmbeddingQueueRow.source, EmbeddingQueueRow.row_id)
    )


def _upsert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(EmbeddingRow)
    return stmt.on_conflict_do_update(
        index_elements=["source", "row_id"],
        set_={
            "model": stmt.excluded.model,
            "dims": stmt.excluded.dims,
            "vector": stmt.excluded.vector,
            "created_at": stmt.excluded.created_at,
        },
    )


_RELEASE = (
    update(EmbeddingQueueRow)
    .where(EmbeddingQueueRow.id.in_(bindparam("ids", expanding=True)))
    .values(claimed_until=None)
)
_MESSAGE_TEXTS = select(
    ObservedMessageRow.id,
    ObservedMessageRow.platform,
    ObservedMessageRow.workspace,
    ObservedMessageRow.channel,
    ObservedMessageRow.content,
).where(ObservedMessageRow.id.in_(bindparam("ids", expanding=True)))
_TURN_TEXTS = (
    select(
        TurnRow.id,
        ConversationRow.platform,
        ConversationRow.workspace,
        ConversationRow.channel,
        TurnRow.content,
    )
    .join(ConversationRow, ConversationRow.id == TurnRow.conversation_id)
    .where(TurnRow.id.in_(bindparam("ids", expanding=True)))
)
_TAKE_QUEUED = (
    delete(EmbeddingQueueRow)
    .where(EmbeddingQueueRow.id.in_(bindparam("ids", expanding=True)))
    .returning(EmbeddingQueueRow.id)
)
_VECTORS = select(EmbeddingRow.row_id, EmbeddingRow.vector).where(
    EmbeddingRow.source == bindparam("source"),
    EmbeddingRow.row_id.in_(bindparam("ids", expanding=True)),
    EmbeddingRow.model == bindparam("model"),
    EmbeddingRow.dims == bindparam("dims"),
)


class VectorStore:
    """Embeddings' rows. `Store.vectors` is one."""

    def __init__(self, db: Database, *, index_window: int | None = None) -> None:
        self._db = db
        self._index_window = index_window
        self._dialect = db.dialect.name
        self._claim = _claim(self._dialect)
        self._upsert = _upsert(self._dialect)
        self._index: vector_index.VectorIndex | None = None
        self._index_detected = False
        self._detecting = asyncio.Lock()

    async def index(self) -> vector_index.VectorIndex | None:
        """The engine's vector index (`bot.store.vector_index`), detected on the first call
        (at start, see `describe_index`); None where there is none, or detecting it failed
        (logged: recall then goes on without one)."""
        if self._index_detected:
            return self._index
        async with self._detecting:
            if not self._index_detected:
                try:
                    self._index = await vector_index.detect(self._db, window=self._index_window)
                except Exception:  # (recall works without an index: say so, don't stop)
                    log.exception("team memory: detecting a vector index failed; none is used")
                self._index_detected = True
        return self._index

    async def close(self) -> None:
        """Stop the index's background work (its copying of older vectors resumes next start)."""
        close = getattr(self._index, "close", None)
        if close is not None:
            await close()

    async def pending(self, limit: int) -> list[PendingText]:
        """Claim the oldest `limit` queue entries no other embedder holds (for CLAIM_SECONDS,
        or until `store` or `release`), with their rows' texts and channels."""
        now = time.time()
        params = {"now": now, "until": now + CLAIM_SECONDS, "limit": limit}
        async with self._db.writing() as conn:
            claimed = (await conn.execute(self._claim, params)).all()
        queued = sorted(claimed, key=lambda q: q.id)
        async with self._db.reading() as conn:
            texts: dict[tuple[str, int], Any] = {}
            for source, stmt in (("message", _MESSAGE_TEXTS), ("turn", _TURN_TEXTS)):
                ids = [q.row_id for q in queued if q.source == source]
                if ids:
                    rows = (await conn.execute(stmt, {"ids": ids})).all()
                    texts.update({(source, r.id): r for r in rows})
        found = []
        for q in queued:
            row = texts.get((q.source, q.row_id))
            channel = ConversationKey(row.platform, row.workspace, row.channel) if row else None
            found.append(
                PendingText(q.id, q.source, q.row_id, channel, row.content if row else None)
            )
        return found

    async def store(self, done: list[tuple[PendingText, list[float] | None]], *, model: str) -> int:
        """Write the vectors of embedded queue entries and remove the entries, in one
        transaction. An entry no longer in the queue (its row was edited or deleted since it
        was read: the triggers replaced or removed it) gets no vector. Returns how many were
        written."""
        if not done:
            return 0
        now = time.time()
        index = await self.index()
        async with self._db.writing() as conn:
            taken = (await conn.execute(_TAKE_QUEUED, {"ids": [p.queue_id for p, _ in done]})).all()
            still = {row.id for row in taken}
            rows = [
                {
                    "source": pending.source,
                    "row_id": pending.row_id,
                    "model": model,
                    "dims": len(vector),
                    "vector": pack_vector(unit(vector)),  # so similarity is a dot product
                    "created_at": now,
                }
                for pending, vector in done
                if vector is not None and pending.queue_id in still
            ]
            if rows and self._dialect == "postgresql":
                await conn.execute(self._upsert, rows)  # (executemany)
            elif rows:  # (one trip to SQLite's thread for them all)
                await conn.execute_each([(self._upsert, row) for row in rows])
            if rows and index is not None:
                await index.add(conn, _indexed(done, still, model))
        return len(rows)

    async def release(self, pending: list[PendingText]) -> None:
        """Give claimed entries back (their embedding failed): they are taken again next time."""
        if pending:
            await self._db.write(_RELEASE, {"ids": [p.queue_id for p in pending]})

    async def vectors(
        self, source: str, row_ids: list[int], *, model: str, dims: int
    ) -> dict[int, array[float]]:
        """The stored vectors of `row_ids` (of `source`) made by `model` with `dims` floats,
        read by primary key; rows without one are left out."""
        if not row_ids:
            return {}
        params = {"source": source, "ids": row_ids, "model": model, "dims": dims}
        async with self._db.reading() as conn:
            rows = (await conn.execute(_VECTORS, params)).all()
        return {row.row_id: unpack_vector(row.vector) for row in rows}

    async def probe_index(self) -> str:
        """Which vector index `index` would find, changing nothing (`tokbot doctor`)."""
        return await vector_index.probe(self._db, window=self._index_window)

    async def describe_index(self) -> str:
        """Which vector index recall uses on this database, in one line (logged once at
        start, shown by `tokbot doctor`)."""
        index = await self.index()
        if index is not None:
            return index.describe()
        why = vector_index.why_none(self._dialect)
        return (
            f"no vector index ({why}); recall re-orders full-text candidates by their stored "
            "vectors (hybrid)"
        )

    async def queued(self) -> int:
        """How many rows wait for a vector (`tokbot doctor`, benchmarks: counts the queue)."""
        async with self._db.reading() as conn:
            stmt = select(func.count()).select_from(EmbeddingQueueRow)
            return int((await conn.execute(stmt)).scalar_one())

    async def memory_usage(self, key: ConversationKey) -> tuple[int, int]:
        """Requests and tokens of team memory's own TokModel calls (embeddings, rerank) in
        the key's channel, for /usage."""
        stmt = select(func.count(), func.coalesce(func.sum(UsageRecordRow.total_tokens), 0)).where(
            UsageRecordRow.platform == key.platform,
            UsageRecordRow.workspace == key.workspace,
            UsageRecordRow.channel == key.channel,
            UsageRecordRow.command.in_(MEMORY_COMMANDS),
        )
        async with self._db.reading() as conn:
            row = (await conn.execute(stmt)).one()
        return int(row[0]), int(row[1])


def _indexed(
    done: list[tuple[PendingText, list[float] | None]], still: set[int], model: str
) -> list[vector_index.IndexedVector]:
    """The vectors `store` wrote, for the vector index (unit length, as stored)."""
    return [
        vector_index.IndexedVector(
            pending.source, pending.row_id, model, pending.channel.channel_key, unit(vector)
        )
        for pending, vector in done
        if vector is not None and pending.queue_id in still and pending.channel is not None
    ]

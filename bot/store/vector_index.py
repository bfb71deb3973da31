"""A vector index beside `embeddings`, where the engine has one: the vectors nearest a query's
within one channel, found by the index, never by reading the channel's history.

Which one is detected when the store first asks (`detect`, at start): sqlite-vec on SQLite
(`bot.store.vector_index_sqlite`), pgvector on a PostgreSQL server that has the extension
(`bot.store.vector_index_pg`); None where neither can be used, and recall then orders the
full-text candidates by their stored vectors only (`bot.vector_recall`).

An index holds a copy of each vector with its channel, written in the same transaction as the
`embeddings` row (`add`), and loses it in the same transaction as that row is deleted (the
implementations' triggers or foreign keys), so a deleted message is never found again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.domain import ConversationKey
from bot.store.database import Database, Session


@dataclass(frozen=True)
class IndexedVector:
    """A vector to index: its `embeddings` row (`source`, `row_id`), the model that made it,
    its channel (a channel key: no thread), and its floats (unit length, as stored)."""

    source: str
    row_id: int
    model: str
    channel: ConversationKey
    vector: list[float]


class VectorIndex(Protocol):
    #: What the start log and `tokbot doctor` call it ("sqlite-vec 0.1.9", "pgvector 0.8.1").
    name: str

    async def add(self, conn: Session, vectors: list[IndexedVector]) -> None:
        """Index `vectors` in the transaction `conn` writes their `embeddings` rows in (a row
        indexed before is replaced)."""

    async def nearest(
        self, key: ConversationKey, query: list[float], *, model: str, limit: int
    ) -> list[tuple[str, int]]:
        """The (source, row_id) of the `limit` vectors made by `model` with as many floats as
        `query` (unit length) that are nearest it in `key`'s channel, nearest first."""

    def describe(self) -> str:
        """One line for the start log and `tokbot doctor`: what is used and what it covers."""


async def detect(db: Database, *, window: int | None = None) -> VectorIndex | None:
    """The vector index this database can use, made ready (tables created, vectors stored before
    it existed being copied in); None where there is none (see the module's doc). `window`:
    how many of a channel's newest vectors SQLite's index searches (None: its default)."""
    if db.dialect.name == "postgresql":
        from bot.store import vector_index_pg

        return await vector_index_pg.detect(db)
    from bot.store import vector_index_sqlite

    if window is None:
        return await vector_index_sqlite.detect(db)
    return await vector_index_sqlite.detect(db, window=window)


async def probe(db: Database, *, window: int | None = None) -> str:
    """What `detect` would find, in one line, changing nothing (`tokbot doctor` only looks:
    `detect` may create the extension and tables, or drop triggers, and start a copy)."""
    if db.dialect.name == "postgresql":
        from bot.store import vector_index_pg

        return await vector_index_pg.probe(db)
    from bot.store import vector_index_sqlite

    return vector_index_sqlite.probe(window or vector_index_sqlite.DEFAULT_WINDOW)


def why_none(dialect: str) -> str:
    """Why `detect` found no index, for the start log (the implementations say more)."""
    if dialect == "postgresql":
        return "this PostgreSQL server has no pgvector extension tokbot may create"
    return "sqlite-vec could not be loaded into this Python's sqlite3"

"""Team memory's tables: which channels have it on, the messages observed there, and the
full-text candidates for recall (migration 0009 made the indexes: SQLite FTS5, PostgreSQL GIN).

Candidates always come from the engine's full-text index, then are narrowed to the channel:
a recall never reads a channel's history row by row."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Double, Integer, String, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.domain import ConversationKey
from bot.store.database import Database
from bot.store.models import MemoryChannelRow, ObservedMessageRow


@dataclass(frozen=True)
class ObservedMessage:
    """A channel message not addressed to the bot, as its adapter saw it."""

    key: ConversationKey  # its channel, and its thread ("" outside threads)
    message_id: str
    author_id: str
    author_name: str
    content: str
    created_at: float
    link: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A stored message that matches a recall's words: observed (`source` "message") or a
    conversation turn ("turn"); `rank` is its place in the index's own order (0 best)."""

    source: str
    id: int
    author_name: str
    content: str
    created_at: float
    link: str | None
    rank: int


_OBSERVED_COLUMNS = {
    "id": Integer,
    "author_name": String,
    "content": String,
    "created_at": Double,
    "link": String,
}
_TURN_COLUMNS = {
    "id": Integer,
    "author_name": String,
    "content": String,
    "created_at": Double,
    "link": String,
}

#: How many of the newest matches in the channel are ranked (the best `limit` of them are
#: the candidates): what a recall costs stays bounded however long the channel's history and
#: however common the words, at the price of not ranking older matches beyond these.
RANKED_WINDOW = 200

# SQLite: FTS5 gives the matches newest first (rowid order, no sort), the join keeps this
# channel's, bm25 (`rank`) is computed for those kept, then the best are taken.
_SQLITE_OBSERVED = text(
    "SELECT id, author_name, content, created_at, link FROM ("
    "SELECT o.id, o.author_name, o.content, o.created_at, o.link, observed_fts.rank AS r "
    "FROM observed_fts JOIN observed_messages o ON o.id = observed_fts.rowid "
    "WHERE observed_fts MATCH :query AND o.platform = :platform "
    "AND o.workspace = :workspace AND o.channel = :channel "
    "ORDER BY observed_fts.rowid DESC LIMIT :window) ORDER BY r, id DESC LIMIT :limit"
).columns(**_OBSERVED_COLUMNS)
# People's turns only (the bot's answers would echo what it recalled).
_SQLITE_TURNS = text(
    "SELECT id, author_name, content, created_at, link FROM ("
    "SELECT t.id, t.author_name, t.content, t.created_at, NULL AS link, turns_fts.rank AS r "
    "FROM turns_fts JOIN turns t ON t.id = turns_fts.rowid "
    "JOIN conversations c ON c.id = t.conversation_id "
    "WHERE turns_fts MATCH :query AND c.platform = :platform "
    "AND c.workspace = :workspace AND c.channel = :channel "
    "AND t.role = 'user' AND t.status = 'ok' "
    "ORDER BY turns_fts.rowid DESC LIMIT :window) ORDER BY r, id DESC LIMIT :limit"
).columns(**_TURN_COLUMNS)
# PostgreSQL: the GIN index's matches (MATERIALIZED: the planner cannot walk the channel's
# rows by another index instead), this channel's newest, ranked by ts_rank.
_PG_OBSERVED = text(
    "WITH q AS (SELECT to_tsquery('simple', :query) AS q), "
    "hits AS MATERIALIZED (SELECT o.* FROM observed_messages o, q "
    "WHERE to_tsvector('simple', o.content) @@ q.q), "
    "newest AS MATERIALIZED (SELECT * FROM hits h "
    "WHERE h.platform = :platform AND h.workspace = :workspace AND h.channel = :channel "
    "ORDER BY h.id DESC LIMIT :window) "
    "SELECT h.id, h.author_name, h.content, h.created_at, h.link FROM newest h, q "
    "ORDER BY ts_rank(to_tsvector('simple', h.content), q.q) DESC, h.id DESC LIMIT :limit"
).columns(**_OBSERVED_COLUMNS)
_PG_TURNS = text(
    "WITH q AS (SELECT to_tsquery('simple', :query) AS q), "
    "hits AS MATERIALIZED (SELECT t.* FROM turns t, q "
    "WHERE to_tsvector('simple', t.content) @@ q.q AND t.role = 'user'), "
    "newest AS MATERIALIZED (SELECT h.* FROM hits h "
    "JOIN conversations c ON c.id = h.conversation_id "
    "WHERE c.platform = :platform AND c.workspace = :workspace AND c.channel = :channel "
    "AND h.status = 'ok' ORDER BY h.id DESC LIMIT :window) "
    "SELECT h.id, h.author_name, h.content, h.created_at, NULL AS link FROM newest h, q "
    "ORDER BY ts_rank(to_tsvector('simple', h.content), q.q) DESC, h.id DESC LIMIT :limit"
).columns(**_TURN_COLUMNS)


def match_query(words: list[str], dialect: str) -> str:
    """Any of `words` (letters and digits only, see `bot.memory.query_words`), in the
    engine's full-text query syntax."""
    if dialect == "postgresql":
        return " | ".join(words)
    return " OR ".join(f'"{word}"' for word in words)


class MemoryStore:
    """Memory's rows. `Store.memory` is one."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._dialect = db.dialect.name

    async def enabled_channels(self) -> set[ConversationKey]:
        """Every channel with memory on (a short list: admins turn it on channel by channel)."""
        query = select(
            MemoryChannelRow.platform, MemoryChannelRow.workspace, MemoryChannelRow.channel
        )
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
        return {ConversationKey(r.platform, r.workspace, r.channel) for r in rows}

    async def set_enabled(self, key: ConversationKey, on: bool, *, by: str) -> None:
        if not on:
            await self._db.write(delete(MemoryChannelRow).where(*_channel(key)))
            return
        upsert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        channel = key.channel_key
        await self._db.write(
            upsert(MemoryChannelRow)
            .values(
                platform=channel.platform,
                workspace=channel.workspace,
                channel=channel.channel,
                enabled_by=by,
                enabled_at=time.time(),
            )
            .on_conflict_do_nothing()
        )

    async def observe(self, message: ObservedMessage) -> None:
        """Store a message (a redelivery replaces the stored one)."""
        key = message.key
        values: dict[str, Any] = {
            "platform": key.platform,
            "workspace": key.workspace,
            "channel": key.channel,
            "thread": key.thread,
            "message_id": message.message_id,
            "author_id": message.author_id,
            "author_name": message.author_name,
            "content": message.content,
            "link": message.link,
            "created_at": message.created_at,
        }
        upsert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        await self._db.write(
            upsert(ObservedMessageRow)
            .values(values)
            .on_conflict_do_update(
                index_elements=["platform", "workspace", "channel", "message_id"],
                set_={"content": message.content, "author_name": message.author_name},
            )
        )

    async def observe_many(self, messages: list[ObservedMessage]) -> None:
        """Store many new messages in one transaction (imports, benchmarks)."""
        rows = [
            {
                "platform": m.key.platform,
                "workspace": m.key.workspace,
                "channel": m.key.channel,
                "thread": m.key.thread,
                "message_id": m.message_id,
                "author_id": m.author_id,
                "author_name": m.author_name,
                "content": m.content,
                "link": m.link,
                "created_at": m.created_at,
            }
            for m in messages
        ]
        if rows:
            async with self._db.writing() as conn:
                await conn.execute(insert(ObservedMessageRow), rows)

    async def edit(self, key: ConversationKey, message_id: str, content: str) -> bool:
        """Replace a stored message's text (its index entry follows); False if not stored."""
        result = await self._db.write(
            update(ObservedMessageRow)
            .where(*_observed(key), ObservedMessageRow.message_id == message_id)
            .values(content=content)
        )
        return result.rowcount > 0

    async def delete(self, key: ConversationKey, message_id: str) -> bool:
        """Delete a stored message and its index entry; False if it was not stored."""
        result = await self._db.write(
            delete(ObservedMessageRow).where(
                *_observed(key), ObservedMessageRow.message_id == message_id
            )
        )
        return result.rowcount > 0

    async def count(self, key: ConversationKey) -> int:
        async with self._db.reading() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).select_from(ObservedMessageRow).where(*_observed(key))
                    )
                ).scalar_one()
            )

    async def forget(self, key: ConversationKey) -> int:
        """Delete every message observed in the channel; return how many."""
        # (Counted by RETURNING: SQLite's change count includes the index triggers' rows.)
        stmt = delete(ObservedMessageRow).where(*_observed(key)).returning(ObservedMessageRow.id)
        return len((await self._db.write(stmt)).all())

    async def candidates(
        self, key: ConversationKey, words: list[str], *, limit: int
    ) -> list[Candidate]:
        """Up to `limit` observed messages and `limit` people's turns of the channel (its
        threads included) that contain any of `words`, each list in the index's order."""
        if not words or limit <= 0:
            return []
        channel = key.channel_key
        params = {
            "query": match_query(words, self._dialect),
            "platform": channel.platform,
            "workspace": channel.workspace,
            "channel": channel.channel,
            "limit": limit,
            "window": max(limit, RANKED_WINDOW),
        }
        pg = self._dialect == "postgresql"
        found: list[Candidate] = []
        async with self._db.reading() as conn:
            for source, stmt in (
                ("message", _PG_OBSERVED if pg else _SQLITE_OBSERVED),
                ("turn", _PG_TURNS if pg else _SQLITE_TURNS),
            ):
                rows = (await conn.execute(stmt, params)).all()
                found += [
                    Candidate(source, r.id, r.author_name, r.content, r.created_at, r.link, rank)
                    for rank, r in enumerate(rows)
                ]
        return found


def _channel(key: ConversationKey) -> tuple[Any, ...]:
    return (
        MemoryChannelRow.platform == key.platform,
        MemoryChannelRow.workspace == key.workspace,
        MemoryChannelRow.channel == key.channel,
    )


def _observed(key: ConversationKey) -> tuple[Any, ...]:
    return (
        ObservedMessageRow.platform == key.platform,
        ObservedMessageRow.workspace == key.workspace,
        ObservedMessageRow.channel == key.channel,
    )

"""Team memory's tables: which channels have it on, the messages observed there, and the
full-text candidates for recall (migrations 0009 and 0012 made the indexes: SQLite FTS5,
PostgreSQL GIN, each with the channel in it).

Candidates always come from the engine's full-text index, per channel: a recall never reads a
channel's history row by row, nor another channel's matches."""

from __future__ import annotations

import functools
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Double,
    Integer,
    String,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import (
    null as sqlalchemy_null,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.selectable import TextualSelect

from bot.domain import ConversationKey
from bot.store.database import Database, Session
from bot.store.memory_pg import RecallSearch
from bot.store.models import ConversationRow, MemoryChannelRow, ObservedMessageRow, TurnRow


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


#: How many matches of the question's words are looked at in all, shared among its words (each
#: gets its newest `RANKED_WINDOW // words` in the channel, `limit` at least): what a recall
#: costs stays bounded however long the channel's history and however common the words, and a
#: rare word's old match is not crowded out by a common word's new ones.
RANKED_WINDOW = 200

#: A window's row: its word's place in the question, and the message or turn.
_HIT_COLUMNS = {
    "w": Integer,
    "id": Integer,
    "author_name": String,
    "content": String,
    "created_at": Double,
    "link": String,
}
_WORD = re.compile(r"[^\W_]+")


def _windows(count: int, window: int, one: str) -> str:
    """`count` copies of the query `one` (with `{i}` its window's number, `{k}` its size),
    each in its own parentheses, as one UNION ALL (each keeps its own ORDER BY and LIMIT)."""
    return " UNION ALL ".join(
        f"SELECT * FROM ({one.format(i=i, k=window)}) w{i}" for i in range(count)
    )


# SQLite: per window, FTS5 intersects the word's list with the channel's (the `scope` column
# of migration 0012) and gives the newest matches first (rowid order: no sort, no bm25). Only
# their ids: they are ranked by which windows they are in, and only the best are read (with
# the channel checked exactly), as reading a row costs more than finding it.
@functools.cache
def _sqlite_observed_hits(count: int, window: int) -> TextualSelect:
    one = (
        "SELECT {i} AS w, rowid AS id FROM observed_fts WHERE observed_fts MATCH :m{i} "
        "ORDER BY rowid DESC LIMIT {k}"
    )
    return text(_windows(count, window, one)).columns(w=Integer, id=Integer)


_SQLITE_OBSERVED_ROWS = text(
    "SELECT o.id, o.author_name, o.content, o.created_at, o.link FROM observed_messages o "
    "WHERE o.id IN (SELECT value FROM json_each(:ids)) AND o.platform = :platform "
    "AND o.workspace = :workspace AND o.channel = :channel"
).columns(id=Integer, author_name=String, content=String, created_at=Double, link=String)


# People's turns only (the bot's answers would echo what it recalled).
@functools.cache
def _sqlite_turns(count: int, window: int) -> TextualSelect:
    one = (
        "SELECT {i} AS w, rowid AS id FROM turns_fts WHERE turns_fts MATCH :m{i} "
        "ORDER BY rowid DESC LIMIT {k}"
    )
    return text(
        "SELECT h.w, t.id, t.author_name, t.content, t.created_at, NULL AS link "
        f"FROM ({_windows(count, window, one)}) h JOIN turns t ON t.id = h.id "
        "JOIN conversations c ON c.id = t.conversation_id "
        "WHERE c.platform = :platform AND c.workspace = :workspace AND c.channel = :channel "
        "AND t.role = 'user' AND t.status = 'ok'"
    ).columns(**_HIT_COLUMNS)


# PostgreSQL: in `bot.store.memory_pg`.


def scope_token(key: ConversationKey) -> str:
    """The channel's token in SQLite's full-text index (as migration 0012's triggers write it)."""
    return f"{key.platform}\x1f{key.workspace}\x1f{key.channel}".encode().hex()


def match_queries(words: list[str], scope: str) -> list[str]:
    """One FTS5 query per word of `words` (letters and digits only, see
    `bot.memory.query_words`), within the channel's `scope`. (Not one for all the words
    together: where each is common and they never meet, FTS5 would walk their lists to the end
    to find that out.)"""
    return [f'scope : "{scope}" AND content : "{word}"' for word in words]


def ranked(rows: list[Any], words: list[str], window: int, limit: int) -> list[Any]:
    """The best `limit` of the windows' rows (`w` the word's window, or -1 for rows found by any
    of the words without one, PostgreSQL's common words; `id`, `content`): the more of the
    question's words first, a word weighing more the fewer matches filled its window (a word
    that filled it is common; one without a window weighs 1), then newest first. A row is in the
    window of each word it has, unless it is older than that word's newest `window` matches."""
    hits = [0] * len(words)
    for row in rows:
        if row.w >= 0:
            hits[row.w] += 1
    weights = [1 + math.log(window / n) if n else 1.0 for n in hits]
    unwindowed = {word for word, n in zip(words, hits, strict=True) if not n}
    best: dict[int, Any] = {}
    score: dict[int, float] = {}
    for row in rows:
        best[row.id] = row
        if row.w >= 0:
            gained = weights[row.w]
        else:  # (a few hundred rows at most: which of those words it has, read from its text)
            gained = float(len(unwindowed.intersection(_WORD.findall(row.content.lower()))))
        score[row.id] = score.get(row.id, 0.0) + gained
    return sorted(best.values(), key=lambda row: (-score[row.id], -row.id))[:limit]


class MemoryStore:
    """Memory's rows. `Store.memory` is one."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._dialect = db.dialect.name
        self._pg_search = RecallSearch()

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
        threads included) that contain any of `words`, each list best first (see `ranked`)."""
        if not words or limit <= 0:
            return []
        channel = key.channel_key
        window = max(limit, RANKED_WINDOW // len(words))
        where = {
            "platform": channel.platform,
            "workspace": channel.workspace,
            "channel": channel.channel,
        }
        async with self._db.reading() as conn:
            if self._dialect == "postgresql":
                stmt, params = await self._pg_search.statement(conn, words, where, window)
                rows = (await conn.execute(stmt, params)).all()
                messages = ranked([r for r in rows if not r.turn], words, window, limit)
                turns = [r for r in rows if r.turn]
            else:
                messages, turns = await _sqlite_hits(
                    conn, words, scope_token(channel), where, window, limit
                )
        found: list[Candidate] = []
        for source, best in (("message", messages), ("turn", ranked(turns, words, window, limit))):
            found += [
                Candidate(source, r.id, r.author_name, r.content, r.created_at, r.link, rank)
                for rank, r in enumerate(best)
            ]
        return found

    async def candidates_by_id(
        self, key: ConversationKey, refs: list[tuple[str, int]], *, rank: int
    ) -> list[Candidate]:
        """The observed messages and people's turns `refs` names ((source, id), e.g. found by
        a vector index), read by primary key, in that order; any no longer there, or not in
        `key`'s channel, left out. Each gets `rank` (they have no place in the full-text
        order)."""
        where = _channel_params(key.channel_key)
        rows: dict[tuple[str, int], Any] = {}
        async with self._db.reading() as conn:
            for source, stmt in (("message", _OBSERVED_BY_ID), ("turn", _TURNS_BY_ID)):
                ids = [i for s, i in refs if s == source]
                if ids:
                    found = (await conn.execute(stmt, where | {"ids": ids})).all()
                    rows.update({(source, r.id): r for r in found})
        return [
            Candidate(source, r.id, r.author_name, r.content, r.created_at, r.link, rank)
            for source, i in refs
            if (r := rows.get((source, i))) is not None
        ]


async def _sqlite_hits(
    conn: Session, words: list[str], scope: str, where: dict[str, str], window: int, limit: int
) -> tuple[list[Any], list[Any]]:
    """The best `limit` observed messages (ranked) and the windows' people's turns (unranked)."""
    params: dict[str, Any] = {f"m{i}": q for i, q in enumerate(match_queries(words, scope))}
    params |= where
    hits, turns = await conn.execute_each(
        [
            (_sqlite_observed_hits(len(words), window), params),
            (_sqlite_turns(len(words), window), params),
        ]
    )
    ids = [hit.id for hit in ranked(hits.all(), words, window, limit)]
    rows = (await conn.execute(_SQLITE_OBSERVED_ROWS, where | {"ids": json.dumps(ids)})).all()
    by_id = {row.id: row for row in rows}
    return [by_id[i] for i in ids if i in by_id], turns.all()


def _channel_params(key: ConversationKey) -> dict[str, str]:
    return {"platform": key.platform, "workspace": key.workspace, "channel": key.channel}


_OBSERVED_BY_ID = select(
    ObservedMessageRow.id,
    ObservedMessageRow.author_name,
    ObservedMessageRow.content,
    ObservedMessageRow.created_at,
    ObservedMessageRow.link,
).where(
    ObservedMessageRow.id.in_(bindparam("ids", expanding=True)),
    ObservedMessageRow.platform == bindparam("platform"),
    ObservedMessageRow.workspace == bindparam("workspace"),
    ObservedMessageRow.channel == bindparam("channel"),
)
_TURNS_BY_ID = (
    select(
        TurnRow.id,
        TurnRow.author_name,
        TurnRow.content,
        TurnRow.created_at,
        sqlalchemy_null().label("link"),
    )
    .join(ConversationRow, ConversationRow.id == TurnRow.conversation_id)
    .where(
        TurnRow.id.in_(bindparam("ids", expanding=True)),
        ConversationRow.platform == bindparam("platform"),
        ConversationRow.workspace == bindparam("workspace"),
        ConversationRow.channel == bindparam("channel"),
        TurnRow.role == "user",
        TurnRow.status == "ok",
    )
)


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

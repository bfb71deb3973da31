"""PostgreSQL's candidates for a recall, bounded by the index's statistics.

A GIN index gives a word's matches in no order, so "the newest matches of this word in the
channel" costs as many row reads as the word has matches; walking the channel's rows newest
first (its btree) costs one read per row until enough match. For a rare word the first is
cheap, for a very common one the second; in between both grow with the channel's history.
So the words are split by how many rows contain them, as ANALYZE estimated for the GIN index's
expression (`pg_stats.most_common_elems`, kept fresh by autovacuum): a rare word's newest
matches come from the GIN index (all of the channel's history: at most RARE_MATCHES rows in all
channels are read), and the other words are looked for among the channel's newest RECENT_ROWS
messages only (its btree, migration 0012), which is what bounds the cost. The price: a word
in more than RARE_MATCHES messages of the database is not found in a channel's older history."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Double, Integer, String, text
from sqlalchemy.sql.selectable import TextualSelect

from bot.store.database import Session

#: A word the statistics put in more rows than this (all channels) is a common word.
RARE_MATCHES = 2_000
#: Common words are looked for among the channel's newest this many messages.
RECENT_ROWS = 400
#: Seconds the statistics are reused (ANALYZE runs far less often).
STATS_TTL = 600.0

_COLUMNS = {
    "turn": Boolean,
    "w": Integer,
    "id": Integer,
    "author_name": String,
    "content": String,
    "created_at": Double,
    "link": String,
}
# The most common lexemes and the share of rows that have each, as ANALYZE found for 0009's GIN
# index's expression; `rows` the table's estimated row count.
_STATS = text(
    "SELECT s.most_common_elems::text::text[] AS words, s.most_common_elem_freqs AS freqs, "
    "c.reltuples AS rows FROM pg_class c LEFT JOIN pg_stats s ON s.attname = 'to_tsvector' "
    "AND s.tablename = 'ix_observed_messages_fts' "
    "WHERE c.relname = 'observed_messages' AND c.relkind = 'r'"
)
_CHANNEL = "o.platform = :platform AND o.workspace = :workspace AND o.channel = :channel"
# The same, in terms no index serves (see `_observed`).
_IN_CHANNEL = (
    "o.platform || chr(31) || o.workspace || chr(31) || o.channel "
    "= :platform || chr(31) || :workspace || chr(31) || :channel"
)
_FIELDS = "o.id, o.author_name, o.content, o.created_at, o.link"


@functools.cache
def _recall(rare: tuple[int, ...], window: int, recent: int, words: int) -> TextualSelect:
    """One statement (one round trip), whatever plan the server caches for it (the same for
    every word). Observed messages: per rare word `:m<i>`, its newest `window` matches in the
    channel, from the GIN index's bitmap of its rows in all channels (at most RARE_MATCHES),
    filtered by a channel test no index serves and sorted by `id + 0`, which no index provides
    (else the planner may walk the channel newest first hoping to meet a rare word soon, and
    read all its history when the word is in none, or AND the bitmap with a busy channel's
    10^6 index entries); then, if `recent`, the channel's newest `recent` messages (its btree,
    newest first) that have a `:common` word. People's turns (far fewer): per word, the newest
    `window` of its matches among all channels' people's turns (0009's GIN index, partial on
    role = 'user'), narrowed to the channel, likewise sorted by `id + 0`."""
    parts = [
        f"SELECT * FROM (SELECT false AS turn, {i} AS w, {_FIELDS} FROM observed_messages o "
        f"WHERE to_tsvector('simple', o.content) @@ to_tsquery('simple', :m{i}) "
        f"AND {_IN_CHANNEL} ORDER BY o.id + 0 DESC LIMIT {window}) w{i}"
        for i in rare
    ]
    if recent:
        parts.append(
            f"SELECT false AS turn, -1 AS w, {_FIELDS} FROM (SELECT * FROM observed_messages o "
            f"WHERE {_CHANNEL} ORDER BY o.id DESC LIMIT {recent}) o "
            "WHERE to_tsvector('simple', o.content) @@ to_tsquery('simple', :common)"
        )
    parts += [
        f"SELECT * FROM (SELECT true AS turn, {i} AS w, t.id, t.author_name, t.content, "
        "t.created_at, NULL AS link FROM turns t JOIN conversations c "
        "ON c.id = t.conversation_id WHERE c.platform = :platform "
        "AND c.workspace = :workspace AND c.channel = :channel AND t.role = 'user' "
        "AND t.status = 'ok' AND to_tsvector('simple', t.content) @@ "
        f"to_tsquery('simple', :m{i}) ORDER BY t.id + 0 DESC LIMIT {window}) t{i}"
        for i in range(words)
    ]
    return text(" UNION ALL ".join(parts)).columns(**_COLUMNS)


@dataclass
class _Stats:
    matches: dict[str, float]  # estimated rows with the word, for the most common words
    at_most: float  # rows with any other word, at most
    read_at: float


class RecallSearch:
    """The statement that finds a channel's candidate rows for some words (`turn`: a person's
    turn, else an observed message; `w`: the word's window, -1 for the recent rows; see
    `bot.store.memory.ranked`), with the statistics it needs (read at most every STATS_TTL
    seconds)."""

    def __init__(self) -> None:
        self._stats: _Stats | None = None

    async def statement(
        self, conn: Session, words: list[str], channel: dict[str, str], window: int
    ) -> tuple[TextualSelect, dict[str, Any]]:
        """The statement and its parameters; its rows' `w` is the word's place in `words`."""
        stats = await self._statistics(conn)
        rare = [w for w in words if stats.matches.get(w, stats.at_most) <= RARE_MATCHES]
        common = [w for w in words if w not in rare]
        # (each word's windows numbered by its place in `words`)
        places = tuple(i for i, word in enumerate(words) if word in rare)
        params: dict[str, Any] = {f"m{i}": word for i, word in enumerate(words)}
        params |= channel | {"common": " | ".join(common)}
        recent = RECENT_ROWS if common else 0
        return _recall(places, window, recent, len(words)), params

    async def _statistics(self, conn: Session) -> _Stats:
        now = time.monotonic()
        if self._stats is None or now - self._stats.read_at >= STATS_TTL:
            row = (await conn.execute(_STATS)).one_or_none()
            self._stats = _parsed(row, now)
        return self._stats


def _parsed(row: Any, now: float) -> _Stats:
    """Never analyzed (or empty): every word counts as rare, which is right for a small table."""
    if row is None or not row.words or not row.freqs or row.rows is None or row.rows <= 0:
        return _Stats({}, 0.0, now)
    rows = float(row.rows)
    freqs = list(row.freqs)
    # most_common_elem_freqs: one per lexeme, then the least and greatest of them, (and the
    # fraction of empty values): any lexeme not listed is in fewer rows than the least.
    matches = {word: freq * rows for word, freq in zip(row.words, freqs, strict=False)}
    least = freqs[len(row.words)] if len(freqs) > len(row.words) else min(freqs)
    return _Stats(matches, least * rows, now)

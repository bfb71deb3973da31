"""Stored summaries: the running summary that long conversations fold their oldest turns into
(`bot.folding`), and the reads `/summarize` needs (a conversation's turns after an id, a
channel's turns over a span, threads included)."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, insert, literal, select, tuple_

from bot.domain import BOT_AUTHOR, ConversationKey, Turn, TurnKind, TurnRole, TurnStatus
from bot.store.database import Database
from bot.store.models import ConversationRow, Id, SummaryRow, TurnRow
from bot.store.store import _BOUND_KEY, _bound_key, _turn

#: Turns people saw (failed requests and answers in flight carry nothing to summarize).
_SHOWN = (TurnStatus.OK.value, TurnStatus.INTERRUPTED.value, TurnStatus.STOPPED.value)


@dataclass(frozen=True)
class StoredSummary:
    """A conversation's running summary: its turn, and the newest turn it covers."""

    turn: Turn
    covers_turn_id: int


@dataclass(frozen=True)
class ChannelTurn:
    """A turn of a channel, with the thread it was said in ("" outside threads)."""

    turn: Turn
    thread: str


class SummaryStore:
    def __init__(self, db: Database, dialect: str) -> None:
        self._db = db
        self._dialect = dialect

    async def add(
        self, key: ConversationKey, content: str, *, covers_turn_id: int, model: str | None
    ) -> int | None:
        """Store a summary of the conversation's turns up to `covers_turn_id`; return its turn
        id (None when the conversation does not exist)."""
        async with self._db.writing() as conn:
            conversation_id = (
                await conn.execute(select(ConversationRow.id).where(*_conversation(key)))
            ).scalar_one_or_none()
            if conversation_id is None:
                return None
            turn_id: int = (
                await conn.execute(
                    insert(TurnRow)
                    .values(
                        conversation_id=conversation_id,
                        role=TurnRole.ASSISTANT.value,
                        kind=TurnKind.SUMMARY.value,
                        status=TurnStatus.OK.value,
                        content=content,
                        author_id=BOT_AUTHOR.id,
                        author_name=BOT_AUTHOR.name,
                        model=model,
                        created_at=time.time(),
                    )
                    .returning(TurnRow.id)
                )
            ).scalar_one()
            await conn.execute(
                insert(SummaryRow).values(
                    turn_id=turn_id, conversation_id=conversation_id, covers_turn_id=covers_turn_id
                )
            )
        return turn_id

    async def latest(self, key: ConversationKey) -> StoredSummary | None:
        """The conversation's newest summary made after its context start (`/forget`), if any.
        (On the answer path of long conversations: one statement, built once.)"""
        async with self._db.reading() as conn:
            rows = (await conn.execute(*self.latest_query(key))).all()
        return latest_found(rows)

    def latest_query(self, key: ConversationKey) -> tuple[Any, dict[str, Any]]:
        """`latest`'s statement and parameters, for a caller that reads it beside others in
        one trip (`Store.answer_context_and`); `latest_found` reads its rows."""
        return _latest_query(self._dialect), _bound_key(key)

    async def turns_after(self, key: ConversationKey, after_id: int, limit: int) -> list[Turn]:
        """Up to `limit` of the conversation's turns after `after_id` and after its context
        start, oldest first (summaries included: callers skip them)."""
        async with self._db.reading() as conn:
            rows = (await conn.execute(self._after(key, after_id, limit))).all()
        return [_turn(row) for row in rows]

    def _after(self, key: ConversationKey, after_id: int, limit: int) -> Select[Any]:
        conversation = _conversation(key)
        cid = select(ConversationRow.id).where(*conversation).scalar_subquery()
        start = select(ConversationRow.context_start_turn_id).where(*conversation).scalar_subquery()
        if self._dialect == "postgresql":  # a range on both index columns (see context_query)
            in_range: tuple[Any, ...] = (
                tuple_(TurnRow.conversation_id, TurnRow.id) > tuple_(cid, literal(after_id, Id)),
                TurnRow.conversation_id <= cid,
                TurnRow.id > start,
            )
        else:
            in_range = (TurnRow.conversation_id == cid, TurnRow.id > after_id, TurnRow.id > start)
        return (
            select(TurnRow)
            .where(*in_range)
            .order_by(TurnRow.conversation_id, TurnRow.id)
            .limit(limit)
        )

    async def channel_turns(
        self, key: ConversationKey, *, since: float, limit: int
    ) -> list[ChannelTurn]:
        """The newest `limit` turns people saw in the key's channel and its threads since
        `since` (epoch seconds), oldest first; summaries and failed requests left out."""
        channel = key.channel_key
        stmt = (
            select(TurnRow, ConversationRow.thread)
            .join(ConversationRow, ConversationRow.id == TurnRow.conversation_id)
            .where(
                ConversationRow.platform == channel.platform,
                ConversationRow.workspace == channel.workspace,
                ConversationRow.channel == channel.channel,
                TurnRow.created_at >= since,
                TurnRow.kind != TurnKind.SUMMARY.value,
                TurnRow.status.in_(_SHOWN),
            )
            .order_by(TurnRow.id.desc())
            .limit(limit)
        )
        async with self._db.reading() as conn:
            rows = (await conn.execute(stmt)).all()
        return [ChannelTurn(_turn(row), row.thread) for row in reversed(rows)]


def latest_found(rows: Sequence[Any]) -> StoredSummary | None:
    """The rows of `SummaryStore.latest_query` as `latest` returns them."""
    return StoredSummary(_turn(rows[0]), rows[0].covers_turn_id) if rows else None


@functools.cache
def _latest_query(dialect: str) -> Select[TurnRow, int]:
    """`SummaryStore.latest`'s statement, with the key as bound parameters (`_bound_key`)."""
    conversation = _conversation(_BOUND_KEY)
    cid = select(ConversationRow.id).where(*conversation).scalar_subquery()
    start = select(ConversationRow.context_start_turn_id).where(*conversation).scalar_subquery()
    in_range: tuple[Any, ...] = (SummaryRow.conversation_id == cid, SummaryRow.turn_id > start)
    if dialect == "postgresql":  # a range on both index columns (see context_query)
        in_range = (
            tuple_(SummaryRow.conversation_id, SummaryRow.turn_id) > tuple_(cid, start),
            SummaryRow.conversation_id <= cid,
        )
    return (
        select(TurnRow, SummaryRow.covers_turn_id)
        .join(SummaryRow, SummaryRow.turn_id == TurnRow.id)
        .where(*in_range)
        .order_by(SummaryRow.conversation_id.desc(), SummaryRow.turn_id.desc())
        .limit(1)
    )


def _conversation(key: ConversationKey) -> tuple[Any, ...]:
    return (
        ConversationRow.platform == key.platform,
        ConversationRow.workspace == key.workspace,
        ConversationRow.channel == key.channel,
        ConversationRow.thread == key.thread,
    )

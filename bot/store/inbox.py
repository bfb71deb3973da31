"""Statements of the inbox (claimed events kept until answered) and of the processes table,
built once with bound parameters (`Store` runs them)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.store.models import InboxRow, ProcessedEventRow, ProcessRow

WAITING, ANSWERING, DONE = "waiting", "answering", "done"
#: Waiting, with a notice on screen saying so: answered by a taker like a waiting row.
ANNOUNCED = "announced"
#: States of a row that has something on screen.
VISIBLE = frozenset({ANSWERING, ANNOUNCED})

_KEY = ("platform", "workspace", "channel", "thread")
_COLUMNS = (*_KEY, "event_id", "owner", "state", "ordered", "payload", "created_at")

#: PostgreSQL: the conversation's advisory lock is taken before the row gets its id, so rows of
#: one conversation are committed in id order and a later row never sees an earlier one missing
#: (an id handed out but not yet committed). SQLite has one writer: ids are committed in order.
_PG_ENQUEUE = text(
    "WITH line AS (SELECT pg_advisory_xact_lock(:line)) "
    f"INSERT INTO inbox ({', '.join(_COLUMNS)}) "
    f"SELECT {', '.join(':' + c for c in _COLUMNS)} FROM line "
    "ON CONFLICT (platform, event_id) DO NOTHING RETURNING id"
).columns(id=InboxRow.id.type)


@functools.cache
def enqueue(dialect: str) -> Any:
    """INSERT of an inbox row that does nothing when its event is there already, returning
    its id when it was not."""
    if dialect == "postgresql":
        return _PG_ENQUEUE
    return (
        sqlite.insert(InboxRow)
        .values({c: bindparam(c) for c in _COLUMNS})
        .on_conflict_do_nothing(index_elements=["platform", "event_id"])
        .returning(InboxRow.id)
    )


def _in_conversation() -> tuple[Any, ...]:
    return tuple(getattr(InboxRow, c) == bindparam(c) for c in _KEY)


SET_STATE = (
    update(InboxRow)
    .where(InboxRow.id == bindparam("inbox_id"), InboxRow.owner == bindparam("me"))
    .values(state=bindparam("new_state"))
)
FINISH = (
    update(InboxRow)
    .where(InboxRow.id.in_(bindparam("ids", expanding=True)), InboxRow.owner == bindparam("me"))
    .values(state=DONE)
)
#: The state of the nearest earlier open row of the conversation (that waits in line).
OPEN_BEFORE = (
    select(InboxRow.state)
    .where(
        *_in_conversation(),
        InboxRow.id < bindparam("inbox_id"),
        InboxRow.state != DONE,
        InboxRow.ordered.is_(True),
    )
    .order_by(*(getattr(InboxRow, c).desc() for c in _KEY), InboxRow.id.desc())
    .limit(1)
)
ABANDON_STARTED = (
    update(InboxRow)
    .where(InboxRow.owner == bindparam("dead"), InboxRow.state == ANSWERING)
    .values(state=DONE)
)
STILL_OPEN = select(func.count()).where(InboxRow.owner == bindparam("dead"), InboxRow.state != DONE)
FORGET_PROCESS = delete(ProcessRow).where(ProcessRow.id == bindparam("dead"))
OTHERS = select(func.count()).where(ProcessRow.id != bindparam("me"))
OTHERS_ALIVE = select(func.count()).where(
    ProcessRow.id != bindparam("me"), ProcessRow.seen_at >= bindparam("alive_after")
)
DEAD = select(ProcessRow.id).where(
    ProcessRow.id != bindparam("me"), ProcessRow.seen_at < bindparam("alive_after")
)
GONE = update(ProcessRow).where(ProcessRow.id == bindparam("me")).values(seen_at=0.0)


def take_over(platforms: tuple[str, ...]) -> Any:
    """Waiting rows of a dead process, for the platforms this process answers, become ours;
    conditional on the owner, so two takers never both get a row."""
    return (
        update(InboxRow)
        .where(
            InboxRow.owner == bindparam("dead"),
            InboxRow.state.in_((WAITING, ANNOUNCED)),
            InboxRow.platform.in_(platforms),
        )
        .values(owner=bindparam("me"))
        .returning(InboxRow.id, InboxRow.payload, InboxRow.ordered)
    )


def heartbeat(dialect: str) -> Any:
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert_(ProcessRow).values(
        id=bindparam("me"), started_at=bindparam("now"), seen_at=bindparam("now")
    )
    return stmt.on_conflict_do_update(
        index_elements=["id"], set_={"seen_at": stmt.excluded.seen_at}
    )


def prune_inbox(limit: int) -> Any:
    """Done rows older than the cutoff, at most `limit` of them (a bounded transaction)."""
    oldest = (
        select(InboxRow.id)
        .where(InboxRow.state == DONE, InboxRow.created_at < bindparam("cutoff"))
        .order_by(InboxRow.created_at)
        .limit(limit)
    )
    return delete(InboxRow).where(InboxRow.id.in_(oldest.scalar_subquery()))


def prune_claims(limit: int) -> Any:
    """Claims of the former de-duplication table older than the cutoff, bounded."""
    oldest = (
        select(ProcessedEventRow.platform, ProcessedEventRow.event_id)
        .where(ProcessedEventRow.created_at < bindparam("cutoff"))
        .limit(limit)
    )
    columns = (ProcessedEventRow.platform, ProcessedEventRow.event_id)
    return delete(ProcessedEventRow).where(tuple_(*columns).in_(oldest))

"""Indexes that keep recall and summaries bounded per channel.

Recall's full-text indexes (0009) were over every channel at once: a quiet channel's recall
walked a busy channel's matches before the channel filter. SQLite: the FTS5 tables get a second
column, `scope`, one token naming the channel (the hex of "platform<US>workspace<US>channel"),
matched with AND, so FTS5 intersects the word's and the channel's lists and gives this
channel's matches newest first. PostgreSQL: a btree on (channel, id), so the channel's newest
messages are read without the GIN index; 0009's GIN index stays as it was, used only for words
the statistics say are rare (see `bot.store.memory_pg`; a GIN index led by the channel's
columns, with `btree_gin`, was measured and dropped: intersecting a busy channel's 10^6-row
posting list cost 10-30 ms a word).

Turns get (conversation_id, created_at) for `/summarize`'s span and created_at for the admin
page's feedback since a date.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCOPE = "lower(hex({p}.platform || char(31) || {p}.workspace || char(31) || {p}.channel))"
#: (FTS table, the view FTS5 reads its columns from, which source rows, the scope of a row
#: `r` of the source table (`new`/`old` in the triggers)).
_FTS = (
    (
        "observed_fts",
        "observed_messages",
        "SELECT r.id, r.content, " + _SCOPE.format(p="r") + " AS scope FROM observed_messages r",
        "1 = 1",
        _SCOPE.format(p="{r}"),
    ),
    (
        "turns_fts",
        "turns",
        "SELECT r.id, r.content, "
        + _SCOPE.format(p="c")
        + " AS scope FROM turns r JOIN conversations c ON c.id = r.conversation_id "
        "WHERE r.role = 'user'",
        "r.role = 'user'",
        "(SELECT "
        + _SCOPE.format(p="c")
        + " FROM conversations c WHERE c.id = {r}.conversation_id)",
    ),
)


def _sqlite_scoped_fts(fts: str, table: str, view: str, where: str, scope: str) -> list[str]:
    """`fts` rebuilt with the scope column. A conversation's channel never changes and neither
    conversations nor observed messages move, so the scope given at a deletion is the one
    indexed (FTS5 needs the exact old values to remove an entry)."""
    new, old = where.replace("r.", "new."), where.replace("r.", "old.")
    new_scope, old_scope = scope.format(r="new"), scope.format(r="old")
    return [
        *_sqlite_drop(fts),
        f"CREATE VIEW {fts}_source AS {view}",
        f"CREATE VIRTUAL TABLE {fts} USING fts5(content, scope, "
        f"content='{fts}_source', content_rowid='id')",
        f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} WHEN {new} BEGIN "
        f"INSERT INTO {fts}(rowid, content, scope) VALUES (new.id, new.content, {new_scope}); END",
        f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} WHEN {old} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, content, scope) "
        f"VALUES ('delete', old.id, old.content, {old_scope}); END",
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF content ON {table} WHEN {old} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, content, scope) "
        f"VALUES ('delete', old.id, old.content, {old_scope}); "
        f"INSERT INTO {fts}(rowid, content, scope) VALUES (new.id, new.content, {new_scope}); END",
        f"INSERT INTO {fts}({fts}) VALUES ('rebuild')",
    ]


def _sqlite_drop(fts: str) -> list[str]:
    return [
        *(f"DROP TRIGGER IF EXISTS {fts}_{trigger}" for trigger in ("insert", "delete", "update")),
        f"DROP TABLE IF EXISTS {fts}",
        f"DROP VIEW IF EXISTS {fts}_source",
    ]


def _sqlite_unscoped_fts(fts: str, table: str, where: str) -> list[str]:
    """0009's index, as it was."""
    new, old = where.replace("r.", "new."), where.replace("r.", "old.")
    return [
        *_sqlite_drop(fts),
        f"CREATE VIRTUAL TABLE {fts} USING fts5(content, content='{table}', content_rowid='id')",
        f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} WHEN {new} BEGIN "
        f"INSERT INTO {fts}(rowid, content) VALUES (new.id, new.content); END",
        f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} WHEN {old} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, content) VALUES ('delete', old.id, old.content); END",
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF content ON {table} WHEN {old} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, content) VALUES ('delete', old.id, old.content); "
        f"INSERT INTO {fts}(rowid, content) VALUES (new.id, new.content); END",
        f"INSERT INTO {fts}(rowid, content) SELECT r.id, r.content FROM {table} r WHERE {where}",
    ]


def upgrade() -> None:
    op.create_index(
        "ix_observed_messages_channel_id",
        "observed_messages",
        ["platform", "workspace", "channel", "id"],
    )
    op.create_index(
        "ix_turns_conversation_id_created_at", "turns", ["conversation_id", "created_at"]
    )
    op.create_index("ix_turns_created_at", "turns", ["created_at"])
    if op.get_context().dialect.name == "sqlite":
        for fts, table, view, where, scope in _FTS:
            for statement in _sqlite_scoped_fts(fts, table, view, where, scope):
                op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for fts, table, _view, where, _scope in _FTS:
            for statement in _sqlite_unscoped_fts(fts, table, where):
                op.execute(statement)
    op.drop_index("ix_turns_created_at", "turns")
    op.drop_index("ix_turns_conversation_id_created_at", "turns")
    op.drop_index("ix_observed_messages_channel_id", "observed_messages")

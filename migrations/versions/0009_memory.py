"""Team memory: the channels that have it on, the channel messages observed there (not addressed
to the bot), and full-text indexes over those and over the stored conversation turns, so
`/recall` and recall in answers take candidates from the engine's index, never a scan.

SQLite: FTS5 external-content tables (`observed_fts`, `turns_fts`; the text is not copied)
kept in step by triggers, so an edit or a deletion changes the index in the same transaction.
PostgreSQL: GIN indexes on `to_tsvector('simple', content)` (the queries use the same
expression). 'simple' (no stemming, no stop words) on both, so the engines agree and no one
language is assumed; tokbot drops common words from the query itself.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Name = sa.String(255)

#: (FTS table, content table, which rows): observed messages all; of the turns, people's
#: (recall never offers the bot's own answers, which would echo what it recalled).
_FTS = (
    ("observed_fts", "observed_messages", "1 = 1"),
    ("turns_fts", "turns", "r.role = 'user'"),
)


def _sqlite_fts(fts: str, table: str, where: str) -> list[str]:
    """An FTS5 index over `table`'s rows that satisfy `where` (in terms of a row `r`: the
    triggers' WHEN clauses keep other rows out, so their updates — an answer saved once a
    second while it streams — touch no index, and their statements' change counts stay 1)."""
    new, old = where.replace("r.", "new."), where.replace("r.", "old.")
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5(content, content='{table}', content_rowid='id')",
        f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} WHEN {new} BEGIN "
        f"INSERT INTO {fts}(rowid, content) VALUES (new.id, new.content); END",
        f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} WHEN {old} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, content) VALUES ('delete', old.id, old.content); END",
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF content ON {table} WHEN {old} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, content) VALUES ('delete', old.id, old.content); "
        f"INSERT INTO {fts}(rowid, content) VALUES (new.id, new.content); END",
        # Rows stored before this revision are indexed too.
        f"INSERT INTO {fts}(rowid, content) SELECT r.id, r.content FROM {table} r WHERE {where}",
    ]


def upgrade() -> None:
    op.create_table(
        "memory_channels",
        sa.Column("platform", Name, nullable=False),
        sa.Column("workspace", Name, nullable=False),
        sa.Column("channel", Name, nullable=False),
        sa.Column("enabled_by", Name, nullable=False),
        sa.Column("enabled_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint(
            "platform", "workspace", "channel", name=op.f("pk_memory_channels")
        ),
    )
    op.create_table(
        "observed_messages",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("platform", Name, nullable=False),
        sa.Column("workspace", Name, nullable=False),
        sa.Column("channel", Name, nullable=False),
        sa.Column("thread", Name, nullable=False),
        sa.Column("message_id", Name, nullable=False),
        sa.Column("author_id", Name, nullable=False),
        sa.Column("author_name", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observed_messages")),
        sa.UniqueConstraint(
            "platform",
            "workspace",
            "channel",
            "message_id",
            name=op.f("uq_observed_messages_platform_workspace_channel_message_id"),
        ),
    )
    if op.get_context().dialect.name == "sqlite":
        for fts, table, where in _FTS:
            for statement in _sqlite_fts(fts, table, where):
                op.execute(statement)
    else:
        for _fts, table, where in _FTS:
            op.execute(
                f"CREATE INDEX ix_{table}_fts ON {table} "
                f"USING gin (to_tsvector('simple', content)) WHERE {where.replace('r.', '')}"
            )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for fts, _table, _where in _FTS:
            for trigger in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {fts}_{trigger}")
            op.execute(f"DROP TABLE IF EXISTS {fts}")
    else:
        op.execute("DROP INDEX IF EXISTS ix_turns_fts")
    op.drop_table("observed_messages")
    op.drop_table("memory_channels")

"""Embeddings of kept messages and people's turns, and the queue of rows waiting for one.

`embeddings` holds one vector per observed message and per person's turn (`source` "message"
or "turn", `row_id` its id): the model and dimensions that made it, the floats as little-endian
float32 bytes (BLOB on SQLite, bytea on PostgreSQL). `embedding_queue` lists the rows still
waiting for one, so the background embedder finds them through the queue's own index, never by
scanning history; its `id` grows with every queueing, so an embedder that read an entry can tell
(by deleting exactly that id) whether the row changed meanwhile. An embedder claims the entries
it works on (`claimed_until`), so replicas on PostgreSQL share the work rather than repeat it.

Triggers keep both in step with the rows in the same transaction: a new row is queued; an edit
(content changed) drops the old vector and queues the row again; a deletion drops its vector
and queue entry at once. The same rows as the full-text indexes of 0009: all observed messages,
people's turns only. Rows stored before this revision are queued here.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: (source, table, which rows, in terms of a row `r`): as migration 0009's full-text indexes.
_SOURCES = (
    ("message", "observed_messages", "1 = 1"),
    ("turn", "turns", "r.role = 'user'"),
)


def _sqlite_triggers(source: str, table: str, where: str) -> list[str]:
    new, old = where.replace("r.", "new."), where.replace("r.", "old.")
    forget_old = (
        f"DELETE FROM embedding_queue WHERE source = '{source}' AND row_id = old.id; "
        f"DELETE FROM embeddings WHERE source = '{source}' AND row_id = old.id; "
    )
    queue_new = f"INSERT INTO embedding_queue (source, row_id) VALUES ('{source}', new.id); "
    return [
        f"CREATE TRIGGER {table}_embed_insert AFTER INSERT ON {table} WHEN {new} "
        f"BEGIN {queue_new}END",
        f"CREATE TRIGGER {table}_embed_update AFTER UPDATE OF content ON {table} "
        f"WHEN {new} AND old.content IS NOT new.content BEGIN {forget_old}{queue_new}END",
        f"CREATE TRIGGER {table}_embed_delete AFTER DELETE ON {table} WHEN {old} "
        f"BEGIN {forget_old}END",
    ]


# PostgreSQL: one trigger function for both tables (the source is the trigger's argument). The
# queue entry goes first, so an embedder writing this row's vector meanwhile (it holds the
# entry's lock) is waited for, and its vector is then deleted here.
_PG_FUNCTION = """
CREATE FUNCTION tokbot_embedding_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM embedding_queue WHERE source = TG_ARGV[0] AND row_id = OLD.id;
        DELETE FROM embeddings WHERE source = TG_ARGV[0] AND row_id = OLD.id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO embedding_queue (source, row_id) VALUES (TG_ARGV[0], NEW.id);
    END IF;
    RETURN NULL;
END
$$
"""


def _pg_triggers(source: str, table: str, where: str) -> list[str]:
    new, old = where.replace("r.", "NEW."), where.replace("r.", "OLD.")
    call = f"FOR EACH ROW WHEN ({{}}) EXECUTE FUNCTION tokbot_embedding_queue('{source}')"
    return [
        f"CREATE TRIGGER {table}_embed_insert AFTER INSERT ON {table} " + call.format(new),
        f"CREATE TRIGGER {table}_embed_update AFTER UPDATE OF content ON {table} "
        + call.format(f"{new} AND OLD.content IS DISTINCT FROM NEW.content"),
        f"CREATE TRIGGER {table}_embed_delete AFTER DELETE ON {table} " + call.format(old),
    ]


def upgrade() -> None:
    op.create_table(
        "embeddings",
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("row_id", Id, nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("source", "row_id", name=op.f("pk_embeddings")),
    )
    op.create_table(
        "embedding_queue",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("row_id", Id, nullable=False),
        sa.Column("claimed_until", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embedding_queue")),
        sa.UniqueConstraint("source", "row_id", name=op.f("uq_embedding_queue_source_row_id")),
    )
    sqlite = op.get_context().dialect.name == "sqlite"
    if not sqlite:
        op.execute(_PG_FUNCTION)
    for source, table, where in _SOURCES:
        for statement in (_sqlite_triggers if sqlite else _pg_triggers)(source, table, where):
            op.execute(statement)
        op.execute(
            f"INSERT INTO embedding_queue (source, row_id) "
            f"SELECT '{source}', r.id FROM {table} r WHERE {where} ORDER BY r.id"
        )


def downgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    for _source, table, _where in _SOURCES:
        for trigger in ("insert", "update", "delete"):
            on = "" if sqlite else f" ON {table}"
            op.execute(f"DROP TRIGGER IF EXISTS {table}_embed_{trigger}{on}")
    if not sqlite:
        op.execute("DROP FUNCTION IF EXISTS tokbot_embedding_queue()")
    op.drop_table("embedding_queue")
    op.drop_table("embeddings")

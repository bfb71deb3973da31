"""Running summaries of long conversations: a summary is a turn of kind "summary"; this table
says which conversation it belongs to and up to which turn it covers (folded turns stay
stored; only the context built from them changes).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "summaries",
        sa.Column("turn_id", Id, nullable=False),
        sa.Column("conversation_id", Id, nullable=False),
        sa.Column("covers_turn_id", Id, nullable=False),
        sa.PrimaryKeyConstraint("turn_id", name=op.f("pk_summaries")),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], name=op.f("fk_summaries_turn_id_turns")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_summaries_conversation_id_conversations"),
        ),
    )
    op.create_index(
        "ix_summaries_conversation_id_turn_id", "summaries", ["conversation_id", "turn_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_summaries_conversation_id_turn_id", table_name="summaries")
    op.drop_table("summaries")

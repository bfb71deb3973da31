"""Feedback on answers: one 👍 or 👎 per person and answer (a second click replaces the first).
Stopped answers need no schema change (turns.status gains the value "stopped").

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Name = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("turn_id", Id, nullable=False),
        sa.Column("user_id", Name, nullable=False),
        sa.Column("value", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], name=op.f("fk_feedback_turn_id_turns")),
        sa.UniqueConstraint("turn_id", "user_id", name=op.f("uq_feedback_turn_id_user_id")),
        sa.CheckConstraint("value IN ('positive', 'negative')", name=op.f("ck_feedback_value")),
    )


def downgrade() -> None:
    op.drop_table("feedback")

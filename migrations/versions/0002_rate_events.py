"""Per-user request counts shared by every replica: one row per allowed TokModel request.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Name = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "rate_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("bucket", Name, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_events")),
    )
    op.create_index("ix_rate_events_bucket_created_at", "rate_events", ["bucket", "created_at"])


def downgrade() -> None:
    op.drop_table("rate_events")

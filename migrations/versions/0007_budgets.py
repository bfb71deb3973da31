"""Token budgets (per user, channel and default, per workspace), the daily usage counters they
are checked against, when each kind of admin alert was last sent, and the platform admins who
used the bot (whom alerts may DM).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Name = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("platform", Name, nullable=False),
        sa.Column("workspace", Name, nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", Name, nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("updated_by", Name, nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint(
            "platform", "workspace", "scope", "subject", name=op.f("pk_budgets")
        ),
        sa.CheckConstraint(
            "scope IN ('user', 'channel', 'default')", name=op.f("ck_budgets_scope")
        ),
        sa.CheckConstraint("period IN ('day', 'month')", name=op.f("ck_budgets_period")),
    )
    op.create_table(
        "usage_daily",
        sa.Column("platform", Name, nullable=False),
        sa.Column("workspace", Name, nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", Name, nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "platform", "workspace", "scope", "subject", "day", name=op.f("pk_usage_daily")
        ),
    )
    op.create_table(
        "admins_seen",
        sa.Column("platform", Name, nullable=False),
        sa.Column("workspace", Name, nullable=False),
        sa.Column("user_id", Name, nullable=False),
        sa.Column("seen_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("platform", "workspace", "user_id", name=op.f("pk_admins_seen")),
    )
    op.create_table(
        "alerts_sent",
        sa.Column("kind", Name, nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_alerts_sent")),
    )


def downgrade() -> None:
    op.drop_table("alerts_sent")
    op.drop_table("admins_seen")
    op.drop_table("usage_daily")
    op.drop_table("budgets")

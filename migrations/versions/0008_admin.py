"""The admin page: TokModel errors by day and status (its overview chart), the failed-login
count behind its lock-out and the sessions ended by logging out (both shared by every
replica), and an index on usage_records.created_at so
the overview's last 30 days are a range scan, not a scan of all history.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Name = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "tokmodel_errors",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("platform", Name, nullable=False),
        sa.Column("workspace", Name, nullable=False),
        sa.Column("channel", Name, nullable=False),
        sa.Column("user_id", Name, nullable=False),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokmodel_errors")),
    )
    op.create_index("ix_tokmodel_errors_created_at", "tokmodel_errors", ["created_at"])
    op.create_index("ix_usage_records_created_at", "usage_records", ["created_at"])
    op.create_table(
        "admin_logins",
        sa.Column("name", Name, nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_admin_logins")),
    )
    op.create_table(
        "admin_logouts",
        sa.Column("session_id", Name, nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_admin_logouts")),
    )


def downgrade() -> None:
    op.drop_table("admin_logouts")
    op.drop_table("admin_logins")
    op.drop_index("ix_usage_records_created_at", table_name="usage_records")
    op.drop_table("tokmodel_errors")

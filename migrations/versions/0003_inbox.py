"""The inbox (claimed events kept until answered, in per-conversation order) and the processes
that answer them (heartbeats, for taking over a dead process's events).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Name = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("platform", Name, nullable=False),
        sa.Column("workspace", Name, nullable=False),
        sa.Column("channel", Name, nullable=False),
        sa.Column("thread", Name, nullable=False),
        sa.Column("event_id", Name, nullable=False),
        sa.Column("owner", Name, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ordered", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox")),
        sa.UniqueConstraint("platform", "event_id", name=op.f("uq_inbox_platform_event_id")),
    )
    op.create_index(
        "ix_inbox_conversation", "inbox", ["platform", "workspace", "channel", "thread", "id"]
    )
    op.create_index("ix_inbox_owner_state", "inbox", ["owner", "state"])
    op.create_index("ix_inbox_created_at", "inbox", ["created_at"])
    op.create_table(
        "processes",
        sa.Column("id", Name, nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("seen_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processes")),
    )


def downgrade() -> None:
    op.drop_table("processes")
    op.drop_table("inbox")

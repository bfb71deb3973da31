"""Initial schema: conversations, turns, channel settings, usage records, processed events.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here (not imported from bot.store.models): a migration is a snapshot of its day.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Name = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("platform", Name, nullable=False),
        sa.Column("workspace", Name, nullable=False),
        sa.Column("channel", Name, nullable=False),
        sa.Column("thread", Name, nullable=False),
        sa.Column("context_start_turn_id", Id, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        sa.UniqueConstraint(
            "platform",
            "workspace",
            "channel",
            "thread",
            name=op.f("uq_conversations_platform_workspace_channel_thread"),
        ),
    )
    op.create_table(
        "turns",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", Id, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("author_id", Name, nullable=False),
        sa.Column("author_name", sa.Text(), nullable=False),
        sa.Column("platform_message_id", Name, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model", Name, nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_turns")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_turns_conversation_id_conversations"),
        ),
    )
    op.create_index("ix_turns_conversation_id_id", "turns", ["conversation_id", "id"])
    op.create_index(
        "ix_turns_pending",
        "turns",
        ["status"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "channel_settings",
        sa.Column("platform", Name, nullable=False),
        sa.Column("workspace", Name, nullable=False),
        sa.Column("channel", Name, nullable=False),
        sa.Column("model", Name, nullable=True),
        sa.Column("persona", sa.Text(), nullable=True),
        sa.Column(
            "transcription_mode",
            sa.String(16),
            nullable=False,
            server_default=sa.text("'transcribe'"),
        ),
        sa.Column("updated_by", Name, nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint(
            "platform", "workspace", "channel", name=op.f("pk_channel_settings")
        ),
        sa.CheckConstraint(
            "transcription_mode IN ('off', 'transcribe', 'translate')",
            name=op.f("ck_channel_settings_transcription_mode"),
        ),
    )
    op.create_table(
        "usage_records",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("platform", Name, nullable=False),
        sa.Column("workspace", Name, nullable=False),
        sa.Column("channel", Name, nullable=False),
        sa.Column("user_id", Name, nullable=False),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("model", Name, nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
    )
    op.create_index(
        "ix_usage_records_channel",
        "usage_records",
        ["platform", "workspace", "channel", "created_at"],
    )
    op.create_index(
        "ix_usage_records_user",
        "usage_records",
        ["platform", "workspace", "user_id", "created_at"],
    )
    op.create_table(
        "processed_events",
        sa.Column("platform", Name, nullable=False),
        sa.Column("event_id", Name, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("platform", "event_id", name=op.f("pk_processed_events")),
    )
    op.create_index("ix_processed_events_created_at", "processed_events", ["created_at"])


def downgrade() -> None:
    op.drop_table("processed_events")
    op.drop_table("usage_records")
    op.drop_table("channel_settings")
    op.drop_table("turns")
    op.drop_table("conversations")

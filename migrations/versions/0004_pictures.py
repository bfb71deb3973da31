"""Pictures in questions: each user turn's pictures by reference (`turn_images`), and their bytes
in a size-capped cache (`image_cache`) so follow-ups can send them again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "turn_images",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("turn_id", Id, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("mime", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_turn_images")),
        sa.ForeignKeyConstraint(
            ["turn_id"], ["turns.id"], name=op.f("fk_turn_images_turn_id_turns")
        ),
    )
    op.create_index("ix_turn_images_turn_id", "turn_images", ["turn_id"])
    op.create_table(
        "image_cache",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("mime", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_image_cache")),
    )
    op.create_index("ix_image_cache_stored_at", "image_cache", ["stored_at"])


def downgrade() -> None:
    op.drop_table("image_cache")
    op.drop_index("ix_turn_images_turn_id", table_name="turn_images")
    op.drop_table("turn_images")

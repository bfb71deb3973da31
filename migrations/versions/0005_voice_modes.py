"""Transcription modes that answer voice questions: `answer` (transcript, then an answer) and
`speak` (the answer also as audio) join off/transcribe/translate in channel_settings' CHECK.

SQLite cannot alter a constraint, so the table is rebuilt (Alembic's batch mode); PostgreSQL
drops and re-creates the constraint in place.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The constraint's full name (models.py's naming convention: ck_<table>_<name>).
CONSTRAINT = "ck_channel_settings_transcription_mode"
OLD_MODES = "transcription_mode IN ('off', 'transcribe', 'translate')"
NEW_MODES = "transcription_mode IN ('off', 'transcribe', 'translate', 'answer', 'speak')"


def upgrade() -> None:
    _replace_check(NEW_MODES)


def downgrade() -> None:
    # Channels that answer voice questions go back to plain transcription first.
    op.execute(
        "UPDATE channel_settings SET transcription_mode = 'transcribe' "
        "WHERE transcription_mode IN ('answer', 'speak')"
    )
    _replace_check(OLD_MODES)


def _replace_check(condition: str) -> None:
    old = NEW_MODES if condition == OLD_MODES else OLD_MODES
    # The table as it stands (as 0001 made it), so SQLite's rebuild needs no reflection and
    # `alembic upgrade --sql` can print it too.
    with op.batch_alter_table("channel_settings", copy_from=_channel_settings(old)) as batch:
        batch.drop_constraint(op.f(CONSTRAINT), type_="check")
        batch.create_check_constraint(op.f(CONSTRAINT), condition)


def _channel_settings(condition: str) -> sa.Table:
    name = sa.String(255)
    return sa.Table(
        "channel_settings",
        sa.MetaData(),
        sa.Column("platform", name, nullable=False),
        sa.Column("workspace", name, nullable=False),
        sa.Column("channel", name, nullable=False),
        sa.Column("model", name, nullable=True),
        sa.Column("persona", sa.Text(), nullable=True),
        sa.Column(
            "transcription_mode",
            sa.String(16),
            nullable=False,
            server_default=sa.text("'transcribe'"),
        ),
        sa.Column("updated_by", name, nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("platform", "workspace", "channel", name="pk_channel_settings"),
        sa.CheckConstraint(condition, name=CONSTRAINT),
    )

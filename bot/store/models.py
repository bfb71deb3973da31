"""The tables tokbot keeps (SQLAlchemy declarative). `migrations/versions` must create exactly this;
`tests/test_migrations.py` compares the two.

Times are float epoch seconds (as `bot.domain.Turn.created_at`), so SQLite and PostgreSQL store
and return the same values without time-zone handling.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Constraint and index names are fixed, so later migrations (SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: What happens to a voice message in a channel (migration 0005 added answer and speak).
TRANSCRIPTION_MODES = ("off", "transcribe", "translate", "answer", "speak")
DEFAULT_TRANSCRIPTION_MODE = "transcribe"

#: 64-bit ids on PostgreSQL; on SQLite a plain INTEGER PRIMARY KEY, which aliases the rowid.
Id = BigInteger().with_variant(Integer(), "sqlite")
#: Platform ids (Slack "C0123", Discord snowflakes, console names) and model names.
Name = String(255)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ConversationRow(Base):
    """One conversation: a channel, or a thread in it (`thread` is "" outside threads)."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("platform", "workspace", "channel", "thread"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(Name)
    workspace: Mapped[str] = mapped_column(Name)
    channel: Mapped[str] = mapped_column(Name)
    thread: Mapped[str] = mapped_column(Name)
    #: Turns with id <= this are outside the context (`/forget` moves it); nothing is deleted.
    context_start_turn_id: Mapped[int] = mapped_column(Id, default=0, server_default=text("0"))
    created_at: Mapped[float] = mapped_column(Double)


class TurnRow(Base):
    """One stored message of a conversation: a user turn, a reply, a transcript, a media note."""

    __tablename__ = "turns"
    __table_args__ = (
        # The context query: WHERE conversation_id = ? AND id > ? ORDER BY id DESC LIMIT n.
        Index("ix_turns_conversation_id_id", "conversation_id", "id"),
        # /summarize's span: a channel's conversations' turns since a time (migration 0012).
        Index("ix_turns_conversation_id_created_at", "conversation_id", "created_at"),
        # The admin page's answers and feedback since a date, across channels.
        Index("ix_turns_created_at", "created_at"),
        # Start-up recovery finds PENDING turns without scanning history; the index holds only them.
        Index(
            "ix_turns_pending",
            "status",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(Id, ForeignKey("conversations.id"))
    role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str] = mapped_column(Name)
    author_name: Mapped[str] = mapped_column(Text)
    platform_message_id: Mapped[str | None] = mapped_column(Name)
    error: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Name)
    created_at: Mapped[float] = mapped_column(Double)


class ChannelSettingsRow(Base):
    """Per-channel settings; threads use their channel's row."""

    __tablename__ = "channel_settings"
    __table_args__ = (
        CheckConstraint(
            "transcription_mode IN ('off', 'transcribe', 'translate', 'answer', 'speak')",
            name="transcription_mode",
        ),
    )

    platform: Mapped[str] = mapped_column(Name, primary_key=True)
    workspace: Mapped[str] = mapped_column(Name, primary_key=True)
    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    model: Mapped[str | None] = mapped_column(Name)
    persona: Mapped[str | None] = mapped_column(Text)
    transcription_mode: Mapped[str] = mapped_column(
        String(16),
        default=DEFAULT_TRANSCRIPTION_MODE,
        server_default=text(f"'{DEFAULT_TRANSCRIPTION_MODE}'"),
    )
    updated_by: Mapped[str] = mapped_column(Name)
    updated_at: Mapped[float] = mapped_column(Double)


class UsageRecordRow(Base):
    """One TokModel request's token usage (0 tokens when the API reported none)."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_channel", "platform", "workspace", "channel", "created_at"),
        Index("ix_usage_records_user", "platform", "workspace", "user_id", "created_at"),
        # The admin page's last 30 days (migration 0008).
        Index("ix_usage_records_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(Name)
    workspace: Mapped[str] = mapped_column(Name)
    channel: Mapped[str] = mapped_column(Name)
    user_id: Mapped[str] = mapped_column(Name)
    command: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(Name)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    total_tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Double)


class ProcessedEventRow(Base):
    """A platform event already answered, so retries and other replicas skip it."""

    __tablename__ = "processed_events"
    __table_args__ = (Index("ix_processed_events_created_at", "created_at"),)

    platform: Mapped[str] = mapped_column(Name, primary_key=True)
    event_id: Mapped[str] = mapped_column(Name, primary_key=True)
    created_at: Mapped[float] = mapped_column(Double)


class RateEventRow(Base):
    """One allowed TokModel request of a user (`bucket` is "platform:user"), counted by every
    replica for the per-user limit; rows older than the window are deleted as they expire."""

    __tablename__ = "rate_events"
    __table_args__ = (Index("ix_rate_events_bucket_created_at", "bucket", "created_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(Name)
    created_at: Mapped[float] = mapped_column(Double)


class InboxRow(Base):
    """A claimed platform event, stored before it is acknowledged, with what answering it needs
    (`payload`: the message and the platform's reply route, JSON; never a credential). Its id is
    its place in its conversation's line; `owner` is the process answering it; `state` is
    waiting, answering (something was shown) or done. Done rows stay a while so redeliveries
    are recognised, then are pruned."""

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("platform", "event_id"),
        # "Is anything earlier in this conversation still open?" and the conversation's line.
        Index("ix_inbox_conversation", "platform", "workspace", "channel", "thread", "id"),
        Index("ix_inbox_owner_state", "owner", "state"),
        Index("ix_inbox_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(Name)
    workspace: Mapped[str] = mapped_column(Name)
    channel: Mapped[str] = mapped_column(Name)
    thread: Mapped[str] = mapped_column(Name)
    event_id: Mapped[str] = mapped_column(Name)
    owner: Mapped[str] = mapped_column(Name)
    state: Mapped[str] = mapped_column(String(16))
    #: Runs in the conversation's order (reads its history); others never wait in line.
    ordered: Mapped[bool] = mapped_column(Boolean)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Double)


class ProcessRow(Base):
    """A running tokbot process (replica), by the time it last said it was alive; the inbox rows
    of one that stopped saying so are taken over by another."""

    __tablename__ = "processes"

    id: Mapped[str] = mapped_column(Name, primary_key=True)
    started_at: Mapped[float] = mapped_column(Double)
    seen_at: Mapped[float] = mapped_column(Double)


class BudgetRow(Base):
    """A token budget in a workspace: of one user (`scope` "user", `subject` their id), of one
    channel ("channel", its id), or of every user without one of their own ("default", "")."""

    __tablename__ = "budgets"
    __table_args__ = (
        CheckConstraint("scope IN ('user', 'channel', 'default')", name="scope"),
        CheckConstraint("period IN ('day', 'month')", name="period"),
    )

    platform: Mapped[str] = mapped_column(Name, primary_key=True)
    workspace: Mapped[str] = mapped_column(Name, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(Name, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(16))
    updated_by: Mapped[str] = mapped_column(Name)
    updated_at: Mapped[float] = mapped_column(Double)


class UsageDailyRow(Base):
    """Tokens and requests of one user or one channel of a workspace on one UTC day (`day`:
    days since 1970-01-01), added to with every usage record, so a budget check reads at most
    31 rows however busy the period was (a sum over usage_records grows with it)."""

    __tablename__ = "usage_daily"

    platform: Mapped[str] = mapped_column(Name, primary_key=True)
    workspace: Mapped[str] = mapped_column(Name, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(Name, primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger)


class AlertSentRow(Base):
    """When admins were last told about one kind of trouble, shared by every replica, so each
    kind reaches them once per hour (or, for a budget, once per period) at most."""

    __tablename__ = "alerts_sent"

    kind: Mapped[str] = mapped_column(Name, primary_key=True)
    sent_at: Mapped[float] = mapped_column(Double)


class TokModelErrorRow(Base):
    """One command that TokModel failed (`status` 0: no HTTP status, e.g. a timeout), for the
    admin page's errors per day and by status."""

    __tablename__ = "tokmodel_errors"
    __table_args__ = (Index("ix_tokmodel_errors_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(Name)
    workspace: Mapped[str] = mapped_column(Name)
    channel: Mapped[str] = mapped_column(Name)
    user_id: Mapped[str] = mapped_column(Name)
    command: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Double)


class AdminLoginRow(Base):
    """Failed admin-page logins in a row and the lock-out they caused, one row per counter
    (`admin-password` from anywhere, `admin-password@<address>` per client), shared by every
    replica."""

    __tablename__ = "admin_logins"

    name: Mapped[str] = mapped_column(Name, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[float] = mapped_column(Double)


class AdminLogoutRow(Base):
    """An admin-page session ended by logging out, refused by every replica until the session
    would have expired anyway (then the row is deleted)."""

    __tablename__ = "admin_logouts"

    session_id: Mapped[str] = mapped_column(Name, primary_key=True)
    expires_at: Mapped[float] = mapped_column(Double)


FEEDBACK_VALUES = ("positive", "negative")


class FeedbackRow(Base):
    """One person's 👍 or 👎 on an answer (an assistant turn); a second click by the same person
    replaces the first."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("turn_id", "user_id"),
        CheckConstraint("value IN ('positive', 'negative')", name="value"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    turn_id: Mapped[int] = mapped_column(Id, ForeignKey("turns.id"))
    user_id: Mapped[str] = mapped_column(Name)
    value: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Double)


class AdminSeenRow(Base):
    """A platform admin (workspace admin, Manage Server) who used the bot: alerts may DM them.
    Kept in the database so every replica, and a restart, knows them."""

    __tablename__ = "admins_seen"

    platform: Mapped[str] = mapped_column(Name, primary_key=True)
    workspace: Mapped[str] = mapped_column(Name, primary_key=True)
    user_id: Mapped[str] = mapped_column(Name, primary_key=True)
    seen_at: Mapped[float] = mapped_column(Double)


class TurnImageRow(Base):
    """A picture sent with a user turn, by reference: where it came from (`source`: the
    platform's file id, or a local path in the console), what it was (sha256, MIME type, size).
    Its bytes, while kept, are in `image_cache`; never base64 in a turn's text."""

    __tablename__ = "turn_images"
    __table_args__ = (Index("ix_turn_images_turn_id", "turn_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    turn_id: Mapped[int] = mapped_column(Id, ForeignKey("turns.id"))
    position: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    mime: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)


class ImageCacheRow(Base):
    """The bytes of question pictures, by sha256, for follow-ups; the oldest (by `stored_at`)
    are deleted beyond TOKBOT_IMAGE_CACHE_BYTES."""

    __tablename__ = "image_cache"
    __table_args__ = (Index("ix_image_cache_stored_at", "stored_at"),)

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    mime: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at: Mapped[float] = mapped_column(Double)


class SummaryRow(Base):
    """A running summary of a conversation's oldest turns: the summary itself is the turn
    `turn_id` (kind "summary"); it covers the conversation's turns up to `covers_turn_id`, which
    stay stored. The context of an answer is the newest summary, then the turns after it."""

    __tablename__ = "summaries"
    __table_args__ = (
        # The newest summary of a conversation: one backward step of this index.
        Index("ix_summaries_conversation_id_turn_id", "conversation_id", "turn_id"),
    )

    turn_id: Mapped[int] = mapped_column(Id, ForeignKey("turns.id"), primary_key=True)
    conversation_id: Mapped[int] = mapped_column(Id, ForeignKey("conversations.id"))
    covers_turn_id: Mapped[int] = mapped_column(Id)


class MemoryChannelRow(Base):
    """A channel with team memory on (`/memory on`): its messages not addressed to the bot are
    observed. No row: memory is off (the default)."""

    __tablename__ = "memory_channels"

    platform: Mapped[str] = mapped_column(Name, primary_key=True)
    workspace: Mapped[str] = mapped_column(Name, primary_key=True)
    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    enabled_by: Mapped[str] = mapped_column(Name)
    enabled_at: Mapped[float] = mapped_column(Double)


class ObservedMessageRow(Base):
    """A channel message not addressed to the bot, kept while the channel has memory on: edits
    replace `content`, a deletion deletes the row. Its full-text index (SQLite FTS5
    `observed_fts` kept by triggers; PostgreSQL a GIN index on the channel and
    to_tsvector('simple', content)) is made by migrations 0009 and 0012 alone: Alembic compares
    neither."""

    __tablename__ = "observed_messages"
    __table_args__ = (
        UniqueConstraint("platform", "workspace", "channel", "message_id"),
        # A common word's newest matches: the channel's newest rows, walked (migration 0012).
        Index("ix_observed_messages_channel_id", "platform", "workspace", "channel", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(Name)
    workspace: Mapped[str] = mapped_column(Name)
    channel: Mapped[str] = mapped_column(Name)
    thread: Mapped[str] = mapped_column(Name)
    message_id: Mapped[str] = mapped_column(Name)
    author_id: Mapped[str] = mapped_column(Name)
    author_name: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Double)


class EmbeddingRow(Base):
    """The vector of one observed message (`source` "message") or person's turn ("turn"),
    `row_id` its id: made by `model` with `dims` floats, stored as little-endian float32 bytes.
    Migration 0011's triggers delete it with its row, and when the row's text changes."""

    __tablename__ = "embeddings"

    source: Mapped[str] = mapped_column(String(8), primary_key=True)
    row_id: Mapped[int] = mapped_column(Id, primary_key=True)
    model: Mapped[str] = mapped_column(Name)
    dims: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(Double)


class EmbeddingQueueRow(Base):
    """A row waiting for its vector (queued by migration 0011's triggers when it is stored or
    its text changes); `id` grows with each queueing, so the embedder, deleting the ids it
    read, learns which rows are still as it embedded them. An embedder claims entries for a
    while (`claimed_until`), so replicas embed different rows."""

    __tablename__ = "embedding_queue"
    __table_args__ = (UniqueConstraint("source", "row_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(8))
    row_id: Mapped[int] = mapped_column(Id)
    #: Taken by an embedder until then (None: free); with replicas, each takes its own.
    claimed_until: Mapped[float | None] = mapped_column(Double)

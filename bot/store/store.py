"""`Store`: conversation history, channel settings, usage and event de-duplication on SQLite or
PostgreSQL, through one async SQLAlchemy engine. Every method is one short transaction."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import Any

from sqlalchemy import (
    Select,
    delete,
    event,
    func,
    insert,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.domain import Author, ConversationKey, Turn, TurnKind, TurnRole, TurnStatus
from bot.store.migrate import upgrade_to_head
from bot.store.models import (
    DEFAULT_TRANSCRIPTION_MODE,
    TRANSCRIPTION_MODES,
    Base,
    ChannelSettingsRow,
    ConversationRow,
    Id,
    ProcessedEventRow,
    TurnRow,
    UsageRecordRow,
)
from bot.tokmodel.types import Usage

#: How many conversation ids `add_turn` remembers (least recently used are dropped).
CONVERSATION_CACHE_SIZE = 4096

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
)


@dataclass(frozen=True)
class ChannelSettings:
    """A channel's settings; None means "use the bot's default"."""

    model: str | None = None
    persona: str | None = None
    transcription_mode: str = DEFAULT_TRANSCRIPTION_MODE


@dataclass(frozen=True)
class UsageSummary:
    """Requests and tokens of one user (in the workspace) and of one channel (all its threads)."""

    user_requests: int
    user_tokens: int
    channel_requests: int
    channel_tokens: int


def context_query(
    key: ConversationKey,
    limit: int,
    *,
    dialect: str,
    from_context_start: bool = True,
    before_id: int | None = None,
) -> Select[Any]:
    """The newest `limit` turns of a conversation, newest first: one backward range scan of
    ix_turns_conversation_id_id between (conversation, context start) and the conversation's
    newest turn, stopped by LIMIT, so its cost does not depend on the history's length.

    The conversation's id and context start are uncorrelated subqueries on its unique key,
    evaluated once. The range is spelled per dialect, because each planner needs its own form to
    bound the scan on both index columns:
    - SQLite: `conversation_id = cid AND id > start` (SQLite 3.40 bounds a backward scan by the
      first column of a row-value range only, and would read all history before the start);
    - PostgreSQL: `(conversation_id, id) > (cid, start) AND conversation_id <= cid`. With the
      equality it may walk the primary key backwards and filter on conversation_id instead (it
      cannot know cid when it plans), reading every newer turn of every other conversation; the
      range plus an ORDER BY on both columns leaves the composite index as the only sort-free
      plan.

    `before_id` pages further back: only turns older than that id."""
    conversation = _conversation_filter(key)
    conversation_id = select(ConversationRow.id).where(*conversation).scalar_subquery()
    start: Any = literal(0, Id)  # ids start at 1
    if from_context_start:
        start = select(ConversationRow.context_start_turn_id).where(*conversation).scalar_subquery()
    if dialect == "postgresql":
        upper: Any = TurnRow.conversation_id <= conversation_id
        if before_id is not None:
            upper = tuple_(TurnRow.conversation_id, TurnRow.id) < tuple_(
                conversation_id, literal(before_id, Id)
            )
        in_range: tuple[Any, ...] = (
            tuple_(TurnRow.conversation_id, TurnRow.id) > tuple_(conversation_id, start),
            upper,
        )
    else:
        in_range = (TurnRow.conversation_id == conversation_id, TurnRow.id > start)
        if before_id is not None:
            in_range += (TurnRow.id < before_id,)
    return (
        select(TurnRow)
        .where(*in_range)
        .order_by(TurnRow.conversation_id.desc(), TurnRow.id.desc())
        .limit(limit)
    )


class Store:
    """tokbot's database. Build with `await Store.open(url)`, then `await store.upgrade()` once at
    start-up; `await store.close()` at shutdown."""

    def __init__(self, engine: AsyncEngine) -> None:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"tokbot supports SQLite and PostgreSQL, not {engine.dialect.name}")
        self.engine = engine
        self._conversation_ids: OrderedDict[ConversationKey, int] = OrderedDict()

    @classmethod
    async def open(cls, url: str) -> Store:
        """An engine for `url` (`sqlite+aiosqlite:///path.db` or `postgresql+asyncpg://...`).
        Connects lazily; a missing SQLite folder is created."""
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = create_async_engine(parsed)
            _prepare_sqlite(engine, parsed)
        else:
            engine = create_async_engine(parsed, pool_pre_ping=True)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def upgrade(self) -> None:
        """Migrate the schema to the newest revision (safe to run from several processes)."""
        await upgrade_to_head(self.engine)

    async def ping(self) -> None:
        """Raise if the database cannot be reached (for health checks)."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    # -- turns ---------------------------------------------------------------------------------

    async def add_turn(
        self,
        key: ConversationKey,
        *,
        role: TurnRole,
        kind: TurnKind,
        content: str,
        author: Author,
        status: TurnStatus = TurnStatus.OK,
        platform_message_id: str | None = None,
        error: str | None = None,
        model: str | None = None,
    ) -> int:
        """Store a turn (creating the conversation on first use); return its id."""
        async with self.engine.begin() as conn:
            conversation_id = self._conversation_ids.get(key)
            if conversation_id is None:
                conversation_id = await self._ensure_conversation(conn, key)
            result = await conn.execute(
                insert(TurnRow)
                .values(
                    conversation_id=conversation_id,
                    role=role.value,
                    kind=kind.value,
                    status=status.value,
                    content=content,
                    author_id=author.id,
                    author_name=author.name,
                    platform_message_id=platform_message_id,
                    error=error,
                    model=model,
                    created_at=time.time(),
                )
                .returning(TurnRow.id)
            )
            turn_id: int = result.scalar_one()
        # Cached only once committed: a rolled-back conversation row must not be remembered.
        self._remember(key, conversation_id)
        return turn_id

    async def update_turn(
        self,
        turn_id: int,
        *,
        content: str | None = None,
        status: TurnStatus | None = None,
        error: str | None = None,
        platform_message_id: str | None = None,
    ) -> None:
        """Change the given fields of a turn (None leaves a field as it is).
        Raise LookupError when there is no such turn."""
        values: dict[str, Any] = {}
        if content is not None:
            values["content"] = content
        if status is not None:
            values["status"] = status.value
        if error is not None:
            values["error"] = error
        if platform_message_id is not None:
            values["platform_message_id"] = platform_message_id
        if not values:
            return
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(TurnRow).where(TurnRow.id == turn_id).values(**values)
            )
        if result.rowcount == 0:
            raise LookupError(f"no turn with id {turn_id}")

    async def context_turns(
        self, key: ConversationKey, limit: int, *, before_id: int | None = None
    ) -> list[Turn]:
        """The newest `limit` turns after the conversation's context start (and, with
        `before_id`, older than that turn), oldest first, whatever their status."""
        if limit <= 0:
            return []
        return await self._turns(
            context_query(key, limit, dialect=self.engine.dialect.name, before_id=before_id)
        )

    async def history(self, key: ConversationKey, limit: int = 50) -> list[Turn]:
        """The newest `limit` turns including those before the context start, oldest first."""
        if limit <= 0:
            return []
        return await self._turns(
            context_query(key, limit, dialect=self.engine.dialect.name, from_context_start=False)
        )

    async def forget(self, key: ConversationKey) -> None:
        """Start the context after the conversation's newest turn; nothing is deleted."""
        # The newest turn by the same bounded index scan as the context (not MAX(id), which
        # PostgreSQL may answer from the primary key, filtering out other conversations' turns).
        newest = (
            context_query(key, 1, dialect=self.engine.dialect.name, from_context_start=False)
            .with_only_columns(TurnRow.id)
            .scalar_subquery()
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                update(ConversationRow)
                .where(*_conversation_filter(key))
                .values(
                    context_start_turn_id=func.coalesce(
                        newest, ConversationRow.context_start_turn_id
                    )
                )
            )

    async def mark_pending_interrupted(self, *, before: float | None = None) -> int:
        """Turn PENDING turns (answers cut off by a crash) into INTERRUPTED; return how many.

        Call it at start-up. With several replicas, pass `before` (epoch seconds, e.g. this
        process's start time minus the longest answer) so answers other replicas are still
        streaming are left alone."""
        stmt = (
            update(TurnRow)
            .where(TurnRow.status == TurnStatus.PENDING.value)
            .values(status=TurnStatus.INTERRUPTED.value)
        )
        if before is not None:
            stmt = stmt.where(TurnRow.created_at < before)
        async with self.engine.begin() as conn:
            result = await conn.execute(stmt)
        return result.rowcount

    # -- channel settings ----------------------------------------------------------------------

    async def channel_settings(self, key: ConversationKey) -> ChannelSettings:
        """The settings of the key's channel (a thread uses its channel's); defaults if unset."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        ChannelSettingsRow.model,
                        ChannelSettingsRow.persona,
                        ChannelSettingsRow.transcription_mode,
                    ).where(*_channel_settings_filter(key))
                )
            ).one_or_none()
        if row is None:
            return ChannelSettings()
        return ChannelSettings(row.model, row.persona, row.transcription_mode)

    async def update_channel_settings(
        self,
        key: ConversationKey,
        *,
        updated_by: str,
        model: str | None | EllipsisType = ...,
        persona: str | None | EllipsisType = ...,
        transcription_mode: str | None | EllipsisType = ...,
    ) -> ChannelSettings:
        """Change the channel's settings and return them all. `...` leaves a setting unchanged;
        None resets it to the default. Raise ValueError for an unknown transcription mode."""
        changes: dict[str, Any] = {}
        if not isinstance(model, EllipsisType):
            changes["model"] = model
        if not isinstance(persona, EllipsisType):
            changes["persona"] = persona
        if not isinstance(transcription_mode, EllipsisType):
            mode = transcription_mode or DEFAULT_TRANSCRIPTION_MODE
            if mode not in TRANSCRIPTION_MODES:
                raise ValueError(
                    f"transcription mode must be one of {', '.join(TRANSCRIPTION_MODES)}, "
                    f"not {mode!r}"
                )
            changes["transcription_mode"] = mode
        channel = key.channel_key
        stamp = {"updated_by": updated_by, "updated_at": time.time()}
        defaults = ChannelSettings()
        stmt = (
            self._insert(ChannelSettingsRow)
            .values(
                {
                    "platform": channel.platform,
                    "workspace": channel.workspace,
                    "channel": channel.channel,
                    "model": defaults.model,
                    "persona": defaults.persona,
                    "transcription_mode": defaults.transcription_mode,
                    **changes,
                    **stamp,
                }
            )
            .on_conflict_do_update(
                index_elements=["platform", "workspace", "channel"], set_={**changes, **stamp}
            )
            .returning(
                ChannelSettingsRow.model,
                ChannelSettingsRow.persona,
                ChannelSettingsRow.transcription_mode,
            )
        )
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).one()
        return ChannelSettings(row.model, row.persona, row.transcription_mode)

    # -- usage ---------------------------------------------------------------------------------

    async def record_usage(
        self,
        key: ConversationKey,
        *,
        user_id: str,
        command: str,
        model: str | None,
        usage: Usage | None,
    ) -> None:
        """Count one request and its tokens (0 when the API reported no usage)."""
        usage = usage or Usage()
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(UsageRecordRow).values(
                    platform=key.platform,
                    workspace=key.workspace,
                    channel=key.channel,
                    user_id=user_id,
                    command=command,
                    model=model,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    total_tokens=usage.total_tokens,
                    created_at=time.time(),
                )
            )

    async def usage_summary(self, key: ConversationKey, user_id: str) -> UsageSummary:
        """Requests and tokens of `user_id` in the key's workspace and of the key's channel."""
        requests = func.count()
        tokens = func.coalesce(func.sum(UsageRecordRow.total_tokens), 0)
        in_workspace = (
            UsageRecordRow.platform == key.platform,
            UsageRecordRow.workspace == key.workspace,
        )
        async with self.engine.connect() as conn:
            user = (
                await conn.execute(
                    select(requests, tokens).where(*in_workspace, UsageRecordRow.user_id == user_id)
                )
            ).one()
            channel = (
                await conn.execute(
                    select(requests, tokens).where(
                        *in_workspace, UsageRecordRow.channel == key.channel
                    )
                )
            ).one()
        return UsageSummary(int(user[0]), int(user[1]), int(channel[0]), int(channel[1]))

    # -- events --------------------------------------------------------------------------------

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """True for the first claim of a platform event, False ever after — across restarts,
        processes and replicas sharing the database."""
        stmt = (
            self._insert(ProcessedEventRow)
            .values(platform=platform, event_id=event_id, created_at=time.time())
            .on_conflict_do_nothing(index_elements=["platform", "event_id"])
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(stmt)
        return result.rowcount == 1

    async def prune_events(self, older_than: float) -> int:
        """Forget claimed events older than `older_than` seconds (platforms retry for minutes,
        not days); return how many were removed."""
        cutoff = time.time() - older_than
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(ProcessedEventRow).where(ProcessedEventRow.created_at < cutoff)
            )
        return result.rowcount

    # -- helpers -------------------------------------------------------------------------------

    def _insert(self, model: type[Base]) -> sqlite.Insert | postgresql.Insert:
        """An INSERT with ON CONFLICT support for this engine's dialect."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    async def _ensure_conversation(self, conn: AsyncConnection, key: ConversationKey) -> int:
        """The conversation's id, creating its row if needed. Race-safe: a concurrent creator's
        row makes our INSERT do nothing, and the SELECT then finds it."""
        inserted = await conn.execute(
            self._insert(ConversationRow)
            .values(
                platform=key.platform,
                workspace=key.workspace,
                channel=key.channel,
                thread=key.thread,
                context_start_turn_id=0,
                created_at=time.time(),
            )
            .on_conflict_do_nothing(index_elements=["platform", "workspace", "channel", "thread"])
            .returning(ConversationRow.id)
        )
        new_id = inserted.scalar_one_or_none()
        if new_id is not None:
            return int(new_id)
        existing = await conn.execute(select(ConversationRow.id).where(*_conversation_filter(key)))
        return int(existing.scalar_one())

    def _remember(self, key: ConversationKey, conversation_id: int) -> None:
        self._conversation_ids[key] = conversation_id
        self._conversation_ids.move_to_end(key)
        while len(self._conversation_ids) > CONVERSATION_CACHE_SIZE:
            self._conversation_ids.popitem(last=False)

    async def _turns(self, stmt: Select[Any]) -> list[Turn]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_turn(row) for row in reversed(rows)]


def _conversation_filter(key: ConversationKey) -> Sequence[Any]:
    return (
        ConversationRow.platform == key.platform,
        ConversationRow.workspace == key.workspace,
        ConversationRow.channel == key.channel,
        ConversationRow.thread == key.thread,
    )


def _channel_settings_filter(key: ConversationKey) -> Sequence[Any]:
    channel = key.channel_key
    return (
        ChannelSettingsRow.platform == channel.platform,
        ChannelSettingsRow.workspace == channel.workspace,
        ChannelSettingsRow.channel == channel.channel,
    )


def _turn(row: Any) -> Turn:
    return Turn(
        id=row.id,
        role=TurnRole(row.role),
        kind=TurnKind(row.kind),
        content=row.content,
        author_id=row.author_id,
        author_name=row.author_name,
        status=TurnStatus(row.status),
        created_at=row.created_at,
        error=row.error,
        platform_message_id=row.platform_message_id,
    )


def _prepare_sqlite(engine: AsyncEngine, url: URL) -> None:
    """Create the database file's folder and set pragmas on every new connection."""
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    if not in_memory and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            if in_memory and "journal_mode" in pragma:
                continue
            cursor.execute(pragma)
        cursor.close()

"""`Store`: conversation history, channel settings, usage and event de-duplication on SQLite or
PostgreSQL, in SQLAlchemy statements (run as `bot.store.database` says). Every method is one short
transaction."""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import Any, cast

from sqlalchemy import (
    Select,
    String,
    bindparam,
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
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import BindParameter

from bot.domain import (
    BOT_AUTHOR,
    Author,
    ConversationKey,
    FeedbackValue,
    Turn,
    TurnKind,
    TurnRole,
    TurnStatus,
)
from bot.store import inbox, vector_index_sqlite
from bot.store.activity import ActivityQueries
from bot.store.budgets import BudgetStore, count_daily, daily_count
from bot.store.database import (
    Database,
    EngineDatabase,
    NothingChanged,
    Params,
    Session,
    SqliteDatabase,
)
from bot.store.liveness import ping_when_idle
from bot.store.logins import LoginQueries
from bot.store.memory import MemoryStore
from bot.store.migrate import upgrade_to_head
from bot.store.models import (
    DEFAULT_TRANSCRIPTION_MODE,
    TRANSCRIPTION_MODES,
    Base,
    ChannelSettingsRow,
    ConversationRow,
    FeedbackRow,
    Id,
    ProcessedEventRow,
    RateEventRow,
    TurnRow,
    UsageRecordRow,
)
from bot.store.urls import async_database_url
from bot.store.vectors import VectorStore
from bot.tokmodel.types import Usage

#: How many conversation ids `add_turn` remembers (least recently used are dropped).
CONVERSATION_CACHE_SIZE = 4096
#: PostgreSQL connections of one process: 5 kept, more at a peak. Other work holds at most 15
#: (SQLAlchemy's default pool), and URGENT_CONNECTIONS more are for the writes an
#: acknowledgement waits on (`EngineDatabase`). Carving those 3 out of the 15 instead made
#: 1,000 answers at once ~10% slower (test_load[postgres], 2 interleaved rounds, loaded machine).
URGENT_CONNECTIONS = 3
POOL_SIZE, POOL_OVERFLOW = 5, 10 + URGENT_CONNECTIONS

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
class AnswerInfo:
    """A stored answer (assistant turn): where it is, its status, and who asked for it."""

    turn_id: int
    key: ConversationKey
    status: TurnStatus
    #: The author of the question before it in its conversation ("" when there is none).
    asker_id: str


@dataclass(frozen=True)
class ChannelFeedback:
    """A channel's answers and the feedback people gave on them."""

    platform: str
    workspace: str
    channel: str
    answers: int
    positive: int
    negative: int


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
    before_id: int | BindParameter[int] | None = None,
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

    `before_id` pages further back: only turns older than that id (or a bound parameter)."""
    conversation = _conversation_filter(key)
    before: Any = None
    if before_id is not None:
        before = before_id if isinstance(before_id, BindParameter) else literal(before_id, Id)
    conversation_id = select(ConversationRow.id).where(*conversation).scalar_subquery()
    start: Any = literal(0, Id)  # ids start at 1
    if from_context_start:
        start = select(ConversationRow.context_start_turn_id).where(*conversation).scalar_subquery()
    if dialect == "postgresql":
        upper: Any = TurnRow.conversation_id <= conversation_id
        if before is not None:
            upper = tuple_(TurnRow.conversation_id, TurnRow.id) < tuple_(conversation_id, before)
        in_range: tuple[Any, ...] = (
            tuple_(TurnRow.conversation_id, TurnRow.id) > tuple_(conversation_id, start),
            upper,
        )
    else:
        in_range = (TurnRow.conversation_id == conversation_id, TurnRow.id > start)
        if before is not None:
            in_range += (TurnRow.id < before,)
    return (
        select(TurnRow)
        .where(*in_range)
        .order_by(TurnRow.conversation_id.desc(), TurnRow.id.desc())
        .limit(limit)
    )


class Store(ActivityQueries, LoginQueries):
    """tokbot's database. Build with `await Store.open(url)`, then `await store.upgrade()` once at
    start-up; `await store.close()` at shutdown."""

    def __init__(
        self,
        engine: AsyncEngine,
        database: Database | None = None,
        *,
        vector_window: int | None = None,
    ) -> None:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"tokbot supports SQLite and PostgreSQL, not {engine.dialect.name}")
        self.engine = engine
        self._db = database or EngineDatabase(engine)
        self._conversation_ids: OrderedDict[ConversationKey, int] = OrderedDict()
        #: Budgets, spending per day and alert claims (bot.store.budgets).
        self.budgets = BudgetStore(self._db)
        from bot.store.summaries import SummaryStore  # (it reads turns as this module does)

        #: Running summaries of long conversations, and the reads /summarize needs.
        self.summaries = SummaryStore(self._db, engine.dialect.name)
        #: Team memory: channels with it on, observed messages, recall candidates.
        self.memory = MemoryStore(self._db)
        #: Embeddings of kept messages and people's turns, and the rows waiting for one.
        self.vectors = VectorStore(self._db, index_window=vector_window)

    @property
    def database(self) -> Database:
        """Where this store's statements run (shared with the stores of features, e.g.
        `bot.store.pictures.PictureStore`)."""
        return self._db

    @classmethod
    async def open(cls, url: str, *, vector_window: int | None = None) -> Store:
        """An engine for `url` (`sqlite+aiosqlite:///path.db` or `postgresql+asyncpg://...`).
        Connects lazily; a missing SQLite folder is created. `sqlite://` and `postgresql://`
        (no driver, or a sync one) are mapped to the async drivers. `vector_window`: SQLite's
        vector index searches a channel's newest that many vectors (`TOKBOT_VECTOR_WINDOW`)."""
        parsed = make_url(async_database_url(url))
        if parsed.get_backend_name() != "sqlite":
            engine = create_async_engine(
                parsed, pool_use_lifo=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW
            )
            ping_when_idle(engine)  # instead of pool_pre_ping's three round trips at every checkout
            ordinary = POOL_SIZE + POOL_OVERFLOW - URGENT_CONNECTIONS
            return cls(engine, EngineDatabase(engine, ordinary=ordinary))
        # sqlite-vec, before any connection opens (an auto_extension reaches only later ones).
        vector_index_sqlite.register()
        engine = create_async_engine(parsed)
        path = _prepare_sqlite(engine, parsed)
        vector_index_sqlite.hook_engine(engine)
        if path is None:  # in memory: every connection would be another database
            return cls(engine, vector_window=vector_window)
        hook = vector_index_sqlite.connection_hook()
        database = SqliteDatabase(engine, path, _SQLITE_PRAGMAS, on_connect=hook)
        return cls(engine, database, vector_window=vector_window)

    async def close(self) -> None:
        await self.vectors.close()
        await self._db.close()
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
        async with self._db.writing() as conn:
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

    async def answer_context(
        self, key: ConversationKey, *, limit: int
    ) -> tuple[ChannelSettings, list[Turn]]:
        """What asking TokModel needs, in one read: the channel's settings and the newest
        `limit` turns of the context, oldest first (as `channel_settings` and `context_turns`)."""
        settings, turns, _ = await self.answer_context_and(key, limit=limit)
        return settings, turns

    async def answer_context_and(
        self, key: ConversationKey, *, limit: int, also: Sequence[tuple[Any, Params]] = ()
    ) -> tuple[ChannelSettings, list[Turn], list[list[Any]]]:
        """As `answer_context`, with the rows of more read-only statements `also` (each with
        its parameters) from the same trip to the database (the budgets: `bot.budgets`; the
        running summary: `SummaryStore.latest_query`)."""
        bound = _bound_key(key)
        query = _bound_context_query(self.engine.dialect.name, max(0, limit))
        statements = [(_SETTINGS_QUERY, bound), (query, bound), *also]
        async with self._db.reading() as conn:
            found, turns, *more = await conn.execute_each(statements)
            row = found.one_or_none()
            rows = turns.all() if limit > 0 else []
            extra = [result.all() for result in more]
        settings = ChannelSettings(*row) if row is not None else ChannelSettings()
        return settings, [_turn(r) for r in reversed(rows)], extra

    async def add_exchange(
        self,
        key: ConversationKey,
        *,
        prompt: str,
        author: Author,
        platform_message_id: str | None,
        model: str,
        kind: TurnKind = TurnKind.TEXT,
    ) -> tuple[int, int]:
        """Store a question (typed, or a voice message's transcript: `kind`) and its
        answer-to-be (PENDING, by `model`) in one statement; return both ids. Its transaction
        holds SQLite's single writer for that one INSERT."""
        question = _turn_values(
            0,
            role=TurnRole.USER,
            kind=kind,
            content=prompt,
            author=author,
            status=TurnStatus.OK,
            platform_message_id=platform_message_id,
        )
        question["kind"] = kind.value
        pending = _turn_values(
            0, role=TurnRole.ASSISTANT, content="", author=BOT_AUTHOR, status=TurnStatus.PENDING
        )
        pending["model"] = model
        conversation_id = self._conversation_ids.get(key)
        if conversation_id is not None:  # one statement: its own transaction
            params = _exchange_params(conversation_id, question, pending)
            inserted = (await self._db.write(_EXCHANGE_INSERT, params)).all()
        else:
            # The conversation's row (unless it exists), then the exchange, which finds its id
            # by the key: one transaction, in one trip to SQLite's writer (not four).
            bound = _bound_key(key)
            created = {**bound, "key_start": 0, "key_created_at": time.time()}
            params = {**_exchange_params(0, question, pending), **bound}
            _, rows = await self._db.write_each(
                [
                    (_conversation_insert(self.engine.dialect.name), created),
                    (_EXCHANGE_BY_KEY, params),
                ]
            )
            inserted = rows.all()
        # Ids grow in the order rows are inserted; RETURNING's own order is not promised.
        (user_turn_id, conversation_id), (answer_turn_id, _) = sorted(inserted)
        self._remember(key, conversation_id)
        return user_turn_id, answer_turn_id

    async def finish_answer(
        self,
        answer_turn_id: int,
        *,
        content: str,
        platform_message_id: str | None,
        key: ConversationKey,
        user_id: str,
        command: str,
        model: str | None,
        usage: Usage | None,
        status: TurnStatus = TurnStatus.OK,
    ) -> None:
        """After the answer is shown, in one transaction: store it as OK (or `status`, e.g.
        STOPPED) and count its usage (as `update_turn` and `record_usage`)."""
        done = {
            "turn_id": answer_turn_id,
            "new_content": content,
            "new_status": status.value,
            "new_platform_message_id": platform_message_id,
        }
        values = _usage_values(key, user_id, command, model, usage)
        daily = daily_count(values, dialect=self.engine.dialect.name)
        try:  # (one trip to SQLite's writer, not five)
            await self._db.write_each(
                [(_FINISH_TURN, done), (_USAGE_INSERT, values), daily], first_changes=True
            )
        except NothingChanged:  # rolled back: the usage is not counted either
            raise LookupError(f"no turn with id {answer_turn_id}") from None

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
        result = await self._db.write(update(TurnRow).where(TurnRow.id == turn_id).values(**values))
        if result.rowcount == 0:
            raise LookupError(f"no turn with id {turn_id}")

    async def save_shown(self, turn_id: int, content: str) -> bool:
        """Keep what a streaming answer shows so far; False when its asker asked to stop it
        (`request_stop`, maybe through another replica): then it is left as it is."""
        result = await self._db.write(_SAVE_SHOWN, {"turn_id": turn_id, "new_content": content})
        return result.rowcount == 1

    async def request_stop(self, turn_id: int) -> bool:
        """Mark a PENDING answer STOPPED, for the process streaming it to notice (its next
        `save_shown` returns False); False when it is not pending any more."""
        result = await self._db.write(
            update(TurnRow)
            .where(TurnRow.id == turn_id, TurnRow.status == TurnStatus.PENDING.value)
            .values(status=TurnStatus.STOPPED.value)
        )
        return result.rowcount == 1

    async def answer_info(self, turn_id: int) -> AnswerInfo | None:
        """The answer stored as `turn_id`, with its asker; None when there is no such
        assistant turn."""
        async with self._db.reading() as conn:
            row = (
                await conn.execute(
                    select(
                        TurnRow.conversation_id,
                        TurnRow.status,
                        ConversationRow.platform,
                        ConversationRow.workspace,
                        ConversationRow.channel,
                        ConversationRow.thread,
                    )
                    .join(ConversationRow, ConversationRow.id == TurnRow.conversation_id)
                    .where(TurnRow.id == turn_id, TurnRow.role == TurnRole.ASSISTANT.value)
                )
            ).one_or_none()
            if row is None:
                return None
            # The question is the user turn just before the answer (stored with it, in one
            # statement, by `add_exchange`).
            asker = (
                await conn.execute(
                    select(TurnRow.author_id)
                    .where(
                        TurnRow.conversation_id == row.conversation_id,
                        TurnRow.id < turn_id,
                        TurnRow.role == TurnRole.USER.value,
                    )
                    .order_by(TurnRow.conversation_id.desc(), TurnRow.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
        key = ConversationKey(row.platform, row.workspace, row.channel, row.thread)
        return AnswerInfo(turn_id, key, TurnStatus(row.status), asker or "")

    async def context_turns(
        self, key: ConversationKey, limit: int, *, before_id: int | None = None
    ) -> list[Turn]:
        """The newest `limit` turns after the conversation's context start (and, with
        `before_id`, older than that turn), oldest first, whatever their status."""
        if limit <= 0:
            return []
        params: dict[str, Any] = _bound_key(key)
        if before_id is not None:
            params["before_id"] = before_id
        query = _bound_page_query(self.engine.dialect.name, limit, paged=before_id is not None)
        return await self._turns(query, params)

    async def history(self, key: ConversationKey, limit: int = 50) -> list[Turn]:
        """The newest `limit` turns including those before the context start, oldest first."""
        if limit <= 0:
            return []
        query = _bound_history_query(self.engine.dialect.name, limit)
        return await self._turns(query, _bound_key(key))

    async def forget(self, key: ConversationKey) -> None:
        """Start the context after the conversation's newest turn; nothing is deleted."""
        # The newest turn by the same bounded index scan as the context (not MAX(id), which
        # PostgreSQL may answer from the primary key, filtering out other conversations' turns).
        newest = (
            context_query(key, 1, dialect=self.engine.dialect.name, from_context_start=False)
            .with_only_columns(TurnRow.id)
            .scalar_subquery()
        )
        await self._db.write(
            update(ConversationRow)
            .where(*_conversation_filter(key))
            .values(
                context_start_turn_id=func.coalesce(newest, ConversationRow.context_start_turn_id)
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
        return (await self._db.write(stmt)).rowcount

    # -- channel settings ----------------------------------------------------------------------

    async def channel_settings(self, key: ConversationKey) -> ChannelSettings:
        """The settings of the key's channel (a thread uses its channel's); defaults if unset."""
        async with self._db.reading() as conn:
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
        row = (await self._db.write(stmt)).one()
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
        """Count one request and its tokens (0 when the API reported no usage), also in the
        daily counters that budgets are checked against."""
        values = _usage_values(key, user_id, command, model, usage)
        async with self._db.writing() as conn:
            await conn.execute(_USAGE_INSERT, values)
            await count_daily(conn, values, dialect=self.engine.dialect.name)

    async def usage_summary(self, key: ConversationKey, user_id: str) -> UsageSummary:
        """Requests and tokens of `user_id` in the key's workspace and of the key's channel."""
        requests = func.count()
        tokens = func.coalesce(func.sum(UsageRecordRow.total_tokens), 0)
        in_workspace = (
            UsageRecordRow.platform == key.platform,
            UsageRecordRow.workspace == key.workspace,
        )
        async with self._db.reading() as conn:
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

    # -- feedback ------------------------------------------------------------------------------

    async def record_feedback(
        self, turn_id: int, user_id: str, value: FeedbackValue
    ) -> FeedbackValue | None | EllipsisType:
        """Store `user_id`'s feedback on the answer `turn_id`, replacing theirs from before.
        Return their feedback before (None: none), or `...` when there is no such answer."""
        now = time.time()
        async with self._db.writing() as conn:
            role = (
                await conn.execute(select(TurnRow.role).where(TurnRow.id == turn_id))
            ).scalar_one_or_none()
            if role != TurnRole.ASSISTANT.value:
                return ...
            mine = (FeedbackRow.turn_id == turn_id, FeedbackRow.user_id == user_id)
            before = (
                await conn.execute(select(FeedbackRow.value).where(*mine))
            ).scalar_one_or_none()
            row = {"turn_id": turn_id, "user_id": user_id, "value": value.value, "created_at": now}
            await conn.execute(
                self._insert(FeedbackRow)
                .values(row)
                .on_conflict_do_update(
                    index_elements=["turn_id", "user_id"],
                    set_={"value": value.value, "created_at": now},
                )
            )
        return None if before is None else FeedbackValue(before)

    async def feedback_by_channel(
        self,
        *,
        platform: str | None = None,
        workspace: str | None = None,
        since: float | None = None,
        limit: int = 20,
    ) -> list[ChannelFeedback]:
        """Per channel (threads included): answers given, and 👍 and 👎 on them, most answers
        first, at most `limit` channels. None for `platform` or `workspace`: all of them;
        `since` (epoch seconds): only answers given since then."""
        where: list[Any] = [TurnRow.role == TurnRole.ASSISTANT.value]
        if platform is not None:
            where.append(ConversationRow.platform == platform)
        if workspace is not None:
            where.append(ConversationRow.workspace == workspace)
        if since is not None:
            where.append(TurnRow.created_at >= since)
        channel = (ConversationRow.platform, ConversationRow.workspace, ConversationRow.channel)
        in_channel = ConversationRow.id == TurnRow.conversation_id
        answers = (
            select(*channel, func.count(TurnRow.id))
            .join(TurnRow, in_channel)
            .where(*where, TurnRow.status.in_(_ANSWERED))
            .group_by(*channel)
        )
        votes = (
            select(*channel, FeedbackRow.value, func.count(FeedbackRow.id))
            .join(TurnRow, in_channel)
            .join(FeedbackRow, FeedbackRow.turn_id == TurnRow.id)
            .where(*where)
            .group_by(*channel, FeedbackRow.value)
        )
        async with self._db.reading() as conn:
            counted = {tuple(r[:3]): int(r[3]) for r in (await conn.execute(answers)).all()}
            voted = (await conn.execute(votes)).all()
        per_value: dict[tuple[Any, ...], dict[str, int]] = {}
        for row in voted:
            per_value.setdefault(tuple(row[:3]), {})[row[3]] = int(row[4])
        found = []
        for place in counted.keys() | per_value.keys():
            values = per_value.get(place, {})
            found.append(
                ChannelFeedback(
                    str(place[0]),
                    str(place[1]),
                    str(place[2]),
                    answers=counted.get(place, 0),
                    positive=values.get(FeedbackValue.POSITIVE.value, 0),
                    negative=values.get(FeedbackValue.NEGATIVE.value, 0),
                )
            )
        found.sort(key=lambda c: (-c.answers, c.platform, c.workspace, c.channel))
        return found[:limit]

    # -- per-user limits ------------------------------------------------------------------------

    async def acquire_rate(self, bucket: str, *, limit: int, window: float) -> float | None:
        """Count one request in `bucket` if fewer than `limit` were counted in the last `window`
        seconds (by any replica sharing the database): None when allowed, else the seconds until
        one is. The request is inserted first and then ranked among the bucket's recent ones, so
        concurrent replicas never allow more than `limit` (under a race both may refuse)."""
        now = time.time()
        since = now - window
        async with self._db.writing() as conn:
            await conn.execute(
                delete(RateEventRow).where(
                    RateEventRow.bucket == bucket, RateEventRow.created_at < since
                )
            )
            result = await conn.execute(
                insert(RateEventRow)
                .values(bucket=bucket, created_at=now)
                .returning(RateEventRow.id)
            )
            mine: int = result.scalar_one()
        recent = (RateEventRow.bucket == bucket, RateEventRow.created_at >= since)
        async with self._db.writing() as conn:
            ahead = (
                await conn.execute(
                    select(func.count(), func.min(RateEventRow.created_at)).where(
                        *recent, RateEventRow.id < mine
                    )
                )
            ).one()
            if int(ahead[0]) < limit:
                return None
            await conn.execute(delete(RateEventRow).where(RateEventRow.id == mine))
        oldest = float(ahead[1])
        return max(0.0, oldest + window - now)

    # -- events --------------------------------------------------------------------------------

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """True for the first claim of a platform event, False ever after — across restarts,
        processes and replicas sharing the database."""
        claim = {"platform": platform, "event_id": event_id, "created_at": time.time()}
        result = await self._db.write(_claim_insert(self.engine.dialect.name), claim)
        return result.rowcount == 1

    async def prune_events(self, older_than: float) -> int:
        """Forget claimed events older than `older_than` seconds (platforms retry for minutes,
        not days); return how many were removed."""
        cutoff = time.time() - older_than
        result = await self._db.write(
            delete(ProcessedEventRow).where(ProcessedEventRow.created_at < cutoff)
        )
        return result.rowcount

    # -- inbox: claimed events, kept until answered -------------------------------------------

    async def enqueue(
        self,
        key: ConversationKey,
        event_id: str,
        *,
        owner: str,
        payload: str,
        line: int,
        ordered: bool = True,
    ) -> int | None:
        """Claim a platform event and keep what answering it needs, in one statement: its inbox
        id (its place in the conversation's line), or None when the event was claimed before
        (a redelivery, or another replica's). `line` names the conversation for PostgreSQL's
        advisory lock (any 64-bit number derived from the key); `ordered` rows are the ones
        later rows of the conversation wait for."""
        row = {
            "platform": key.platform,
            "workspace": key.workspace,
            "channel": key.channel,
            "thread": key.thread,
            "event_id": event_id,
            "owner": owner,
            "state": inbox.WAITING,
            "ordered": ordered,
            "payload": payload,
            "created_at": time.time(),
            "line": line,
        }
        statement = inbox.enqueue(self.engine.dialect.name)
        if self.engine.dialect.name != "postgresql":
            del row["line"]
        result = await self._db.write_together(statement, row, urgent=True)
        found = result.scalar_one_or_none()
        return None if found is None else int(found)

    async def set_inbox_state(self, inbox_id: int, state: str, *, owner: str) -> bool:
        """Move a row of ours to `state`; False when it is no longer ours (taken over)."""
        params = {"inbox_id": inbox_id, "me": owner, "new_state": state}
        return (await self._db.write(inbox.SET_STATE, params)).rowcount == 1

    async def finish_inbox(self, inbox_ids: Sequence[int], *, owner: str) -> int:
        """Mark rows of `owner` done, in one statement; return how many."""
        params = {"ids": list(inbox_ids), "me": owner}
        return (await self._db.write(inbox.FINISH, params)).rowcount

    async def open_before(self, key: ConversationKey, inbox_id: int) -> str | None:
        """The state of the nearest earlier row of the conversation that is not done yet (any
        replica's, among those that wait in line), or None."""
        params = {
            "platform": key.platform,
            "workspace": key.workspace,
            "channel": key.channel,
            "thread": key.thread,
            "inbox_id": inbox_id,
        }
        async with self._db.reading() as conn:
            state = (await conn.execute(inbox.OPEN_BEFORE, params)).scalar_one_or_none()
        return None if state is None else str(state)

    async def heartbeat(self, process: str, *, alive_after: float) -> tuple[int, int]:
        """Say `process` is alive; return how many other processes are known, and how many of
        them said so since `alive_after`."""
        now = time.time()
        async with self._db.writing() as conn:
            await conn.execute(
                inbox.heartbeat(self.engine.dialect.name), {"me": process, "now": now}
            )
            known = (await conn.execute(inbox.OTHERS, {"me": process})).scalar_one()
            alive = (
                await conn.execute(inbox.OTHERS_ALIVE, {"me": process, "alive_after": alive_after})
            ).scalar_one()
        return int(known), int(alive)

    async def leave(self, process: str) -> None:
        """A process stopping: others may take over what it leaves unanswered at once."""
        await self._db.write(inbox.GONE, {"me": process})

    async def dead_processes(self, process: str, *, alive_after: float) -> list[str]:
        async with self._db.reading() as conn:
            rows = await conn.execute(inbox.DEAD, {"me": process, "alive_after": alive_after})
        return [str(r) for r in rows.scalars()]

    async def take_over(
        self, dead: str, *, owner: str, platforms: Sequence[str]
    ) -> list[tuple[int, str, bool]]:
        """A dead process's rows, in one transaction: those it had started answering are done
        (answering again would say it twice); those still waiting, for `platforms`, become
        `owner`'s (id, payload and whether ordered, in id order). The dead process is
        forgotten once it has no open rows left."""
        mine: list[tuple[int, str, bool]] = []
        async with self._db.writing() as conn:
            await conn.execute(inbox.ABANDON_STARTED, {"dead": dead})
            if platforms:
                rows = await conn.execute(
                    inbox.take_over(tuple(platforms)), {"dead": dead, "me": owner}
                )
                mine = sorted((int(r.id), str(r.payload), bool(r.ordered)) for r in rows.all())
            if (await conn.execute(inbox.STILL_OPEN, {"dead": dead})).scalar_one() == 0:
                await conn.execute(inbox.FORGET_PROCESS, {"dead": dead})
        return mine

    async def prune_inbox(self, older_than: float, *, limit: int = 1000) -> int:
        """Forget answered events older than `older_than` seconds, at most `limit` at a time
        (and old claims of the former processed_events table); return how many."""
        cutoff = {"cutoff": time.time() - older_than}
        removed = (await self._db.write(inbox.prune_inbox(limit), cutoff)).rowcount
        removed += (await self._db.write(inbox.prune_claims(limit), cutoff)).rowcount
        return removed

    # -- helpers -------------------------------------------------------------------------------

    def _insert(self, model: type[Base]) -> sqlite.Insert | postgresql.Insert:
        """An INSERT with ON CONFLICT support for this engine's dialect."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    async def _ensure_conversation(self, conn: Session, key: ConversationKey) -> int:
        """The conversation's id, creating its row if needed. Race-safe: a concurrent creator's
        row makes our INSERT do nothing, and the SELECT then finds it."""
        bound = _bound_key(key)
        row = {**bound, "key_start": 0, "key_created_at": time.time()}
        inserted = await conn.execute(_conversation_insert(self.engine.dialect.name), row)
        new_id = inserted.scalar_one_or_none()
        if new_id is not None:
            return int(new_id)
        existing = await conn.execute(_CONVERSATION_ID, bound)
        return int(existing.scalar_one())

    def _remember(self, key: ConversationKey, conversation_id: int) -> None:
        self._conversation_ids[key] = conversation_id
        self._conversation_ids.move_to_end(key)
        while len(self._conversation_ids) > CONVERSATION_CACHE_SIZE:
            self._conversation_ids.popitem(last=False)

    async def _turns(self, stmt: Select[Any], params: dict[str, Any]) -> list[Turn]:
        async with self._db.reading() as conn:
            rows = (await conn.execute(stmt, params)).all()
        return [_turn(row) for row in reversed(rows)]


def _turn_values(
    conversation_id: int,
    *,
    role: TurnRole,
    content: str,
    author: Author,
    status: TurnStatus,
    platform_message_id: str | None = None,
    model: str | None = None,
    kind: TurnKind = TurnKind.TEXT,
) -> dict[str, Any]:
    """One row's values for `_exchange_params`."""
    return {
        "conversation_id": conversation_id,
        "role": role.value,
        "kind": kind.value,
        "status": status.value,
        "content": content,
        "author_id": author.id,
        "author_name": author.name,
        "platform_message_id": platform_message_id,
        "error": None,
        "model": model,
        "created_at": time.time(),
    }


def _exchange_params(
    conversation_id: int, question: dict[str, Any], answer: dict[str, Any]
) -> dict[str, Any]:
    """Parameters of `_EXCHANGE_INSERT`."""
    question["conversation_id"] = answer["conversation_id"] = conversation_id
    return {
        **{f"q_{name}": value for name, value in question.items()},
        **{f"a_{name}": value for name, value in answer.items()},
    }


def _usage_values(
    key: ConversationKey, user_id: str, command: str, model: str | None, usage: Usage | None
) -> dict[str, Any]:
    """Parameters of `_USAGE_INSERT`."""
    usage = usage or Usage()
    return {
        "platform": key.platform,
        "workspace": key.workspace,
        "channel": key.channel,
        "user_id": user_id,
        "command": command,
        "model": model,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "created_at": time.time(),
    }


def _bound_key(key: ConversationKey) -> dict[str, str]:
    """Parameters of the statements built on `_BOUND_KEY`."""
    return {
        "key_platform": key.platform,
        "key_workspace": key.workspace,
        "key_channel": key.channel,
        "key_thread": key.thread,
    }


#: Answers people saw (failed ones showed only an error).
_ANSWERED = (TurnStatus.OK.value, TurnStatus.INTERRUPTED.value, TurnStatus.STOPPED.value)

# The path every /ask takes runs statements built once, with bound parameters: building a
# statement costs more than SQLAlchemy's (cached) compilation of it.
_KEY_PARTS = ("platform", "workspace", "channel", "thread")
_BOUND_KEY = ConversationKey(*(cast(str, bindparam(f"key_{name}")) for name in _KEY_PARTS))
_TURN_COLUMNS = (
    "conversation_id", "role", "kind", "status", "content", "author_id", "author_name",
    "platform_message_id", "error", "model", "created_at",
)  # fmt: skip
#: A question and its answer-to-be in one statement (parameters: `_exchange_params`).
_EXCHANGE_INSERT = (
    insert(TurnRow)
    .values([{name: bindparam(f"{row}_{name}") for name in _TURN_COLUMNS} for row in "qa"])
    .returning(TurnRow.id, TurnRow.conversation_id)
)
_USAGE_INSERT = insert(UsageRecordRow)
#: `save_shown`, built (and compiled) once: building it cost more than running it.
_SAVE_SHOWN = (
    update(TurnRow)
    .where(TurnRow.id == bindparam("turn_id"), TurnRow.status != TurnStatus.STOPPED.value)
    .values(content=bindparam("new_content"))
)
_FINISH_TURN = (
    update(TurnRow)
    .where(TurnRow.id == bindparam("turn_id"))
    .values(
        content=bindparam("new_content"),
        status=bindparam("new_status"),
        platform_message_id=func.coalesce(
            bindparam("new_platform_message_id", type_=String), TurnRow.platform_message_id
        ),
    )
)


@functools.cache
def _bound_context_query(dialect: str, limit: int) -> Select[Any]:
    return context_query(_BOUND_KEY, limit, dialect=dialect)


# Pages of a long thread's context are read with statements built (and compiled) once per
# size: building and compiling one cost ~4 ms, more than reading a page (issue 16).
@functools.lru_cache(maxsize=64)
def _bound_page_query(dialect: str, limit: int, *, paged: bool) -> Select[Any]:
    before = bindparam("before_id", type_=Id) if paged else None
    return context_query(_BOUND_KEY, limit, dialect=dialect, before_id=before)


@functools.lru_cache(maxsize=16)
def _bound_history_query(dialect: str, limit: int) -> Select[Any]:
    return context_query(_BOUND_KEY, limit, dialect=dialect, from_context_start=False)


def _settings_select(key: ConversationKey) -> Select[str | None, str | None, str]:
    return select(
        ChannelSettingsRow.model,
        ChannelSettingsRow.persona,
        ChannelSettingsRow.transcription_mode,
    ).where(*_channel_settings_filter(key))


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


#: Each enum's members by value: a dict look-up, where `TurnRole(value)` goes through the enum
#: machinery (~1 µs each, three per turn; a 130-turn context read spent 0.25 ms in it).
_ROLES = {m.value: m for m in TurnRole}
_KINDS = {m.value: m for m in TurnKind}
_STATUSES = {m.value: m for m in TurnStatus}


def _turn(row: Any) -> Turn:
    return Turn(
        id=row.id,
        role=_ROLES.get(row.role) or TurnRole(row.role),  # (an unknown value still raises)
        kind=_KINDS.get(row.kind) or TurnKind(row.kind),
        content=row.content,
        author_id=row.author_id,
        author_name=row.author_name,
        status=_STATUSES.get(row.status) or TurnStatus(row.status),
        created_at=row.created_at,
        error=row.error,
        platform_message_id=row.platform_message_id,
    )


def _prepare_sqlite(engine: AsyncEngine, url: URL) -> str | None:
    """Create the database file's folder and set pragmas on every new connection. Return the
    file's path, or None for a database in memory or given as a `file:` URI."""
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    on_disk = not in_memory and not database.startswith("file:")
    if on_disk:
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            if in_memory and "journal_mode" in pragma:
                continue
            cursor.execute(pragma)
        cursor.close()

    return database if on_disk and not url.query else None


_SETTINGS_QUERY = _settings_select(_BOUND_KEY)
_CONVERSATION_ID = select(ConversationRow.id).where(*_conversation_filter(_BOUND_KEY))

#: As `_EXCHANGE_INSERT`, its conversation found by the key's parameters (`_bound_key`).
_EXCHANGE_BY_KEY = (
    insert(TurnRow)
    .values(
        [
            {
                name: select(ConversationRow.id)
                .where(*_conversation_filter(_BOUND_KEY))
                .scalar_subquery()
                if name == "conversation_id"
                else bindparam(f"{row}_{name}")
                for name in _TURN_COLUMNS
            }
            for row in "qa"
        ]
    )
    .returning(TurnRow.id, TurnRow.conversation_id)
)


@functools.cache
def _conversation_insert(dialect: str) -> Any:
    """INSERT of a conversation (parameters as `_bound_key`, plus key_start and key_created_at)
    that does nothing when it exists, returning its id when it did not."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert_(ConversationRow)
        .values(
            platform=bindparam("key_platform"),
            workspace=bindparam("key_workspace"),
            channel=bindparam("key_channel"),
            thread=bindparam("key_thread"),
            context_start_turn_id=bindparam("key_start"),
            created_at=bindparam("key_created_at"),
        )
        .on_conflict_do_nothing(index_elements=["platform", "workspace", "channel", "thread"])
        .returning(ConversationRow.id)
    )


@functools.cache
def _claim_insert(dialect: str) -> Any:
    """INSERT of a processed event that does nothing when it is already there."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_(ProcessedEventRow).on_conflict_do_nothing(
        index_elements=["platform", "event_id"]
    )

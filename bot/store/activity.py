"""What the admin page reports, read from the tables the commands write: usage per day, channel
and user (the rows `/usage` counts), TokModel errors by day and status, every channel with its
settings (the row `/model`, `/persona` and `/transcription` change). A mixin of `Store`.

Days are UTC days (epoch seconds // 86,400)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Integer, cast, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.domain import ConversationKey
from bot.store.database import Database
from bot.store.models import (
    DEFAULT_TRANSCRIPTION_MODE,
    ChannelSettingsRow,
    ConversationRow,
    TokModelErrorRow,
    UsageRecordRow,
)

DAY = 86_400


@dataclass(frozen=True)
class DayActivity:
    """One UTC day: requests answered and their tokens (as `/usage` counts them), and the
    commands TokModel failed."""

    day: int  # days since the epoch
    requests: int
    tokens: int
    errors: int


@dataclass(frozen=True)
class Usage:
    """Requests and tokens of one channel or one user (`who`: channel or user id)."""

    platform: str
    workspace: str
    who: str
    requests: int
    tokens: int


@dataclass(frozen=True)
class ChannelOverview:
    """A channel's settings (None: the bot's default) and its usage in the period asked for."""

    key: ConversationKey
    model: str | None
    persona: str | None
    transcription_mode: str
    requests: int
    tokens: int


class ActivityQueries:
    """Reads for the admin page, and the one write it needs from the core (errors)."""

    engine: AsyncEngine
    _db: Database

    async def record_tokmodel_error(
        self, key: ConversationKey, *, user_id: str, command: str, status: int | None
    ) -> None:
        """Count a command TokModel failed (`status` None: no HTTP status, e.g. a timeout)."""
        await self._db.write(
            insert(TokModelErrorRow).values(
                platform=key.platform,
                workspace=key.workspace,
                channel=key.channel,
                user_id=user_id,
                command=command,
                status=status or 0,
                created_at=time.time(),
            )
        )

    async def daily_activity(self, days: int, *, now: float | None = None) -> list[DayActivity]:
        """The last `days` UTC days up to today, oldest first, days without activity as zeros."""
        today = int((now if now is not None else time.time()) // DAY)
        first = today - days + 1
        usage_day = self._day(UsageRecordRow.created_at)
        error_day = self._day(TokModelErrorRow.created_at)
        async with self._db.reading() as conn:
            usage = await conn.execute(
                select(
                    usage_day.label("day"),
                    func.count().label("requests"),
                    func.coalesce(func.sum(UsageRecordRow.total_tokens), 0).label("tokens"),
                )
                .where(UsageRecordRow.created_at >= first * DAY)
                .group_by(usage_day)
            )
            errors = await conn.execute(
                select(error_day.label("day"), func.count().label("errors"))
                .where(TokModelErrorRow.created_at >= first * DAY)
                .group_by(error_day)
            )
        used = {int(r.day): (int(r.requests), int(r.tokens)) for r in usage.all()}
        failed = {int(r.day): int(r.errors) for r in errors.all()}
        return [
            DayActivity(day, *used.get(day, (0, 0)), failed.get(day, 0))
            for day in range(first, today + 1)
        ]

    async def errors_by_status(self, *, since: float = 0.0) -> list[tuple[int, int]]:
        """(status, commands failed) since `since`, most frequent first; status 0: none."""
        count = func.count().label("n")
        async with self._db.reading() as conn:
            rows = await conn.execute(
                select(TokModelErrorRow.status, count)
                .where(TokModelErrorRow.created_at >= since)
                .group_by(TokModelErrorRow.status)
                .order_by(count.desc(), TokModelErrorRow.status)
            )
        return [(int(r.status), int(r.n)) for r in rows.all()]

    async def usage_by_channel(self, *, since: float = 0.0, limit: int = 100) -> list[Usage]:
        """Channels by tokens spent since `since` (threads count for their channel)."""
        return await self._usage_by(UsageRecordRow.channel, since, limit)

    async def usage_by_user(self, *, since: float = 0.0, limit: int = 100) -> list[Usage]:
        """Users (per workspace, as `/usage` counts them) by tokens spent since `since`."""
        return await self._usage_by(UsageRecordRow.user_id, since, limit)

    async def channel_overviews(
        self, *, since: float = 0.0, limit: int = 500
    ) -> list[ChannelOverview]:
        """Every channel tokbot knows (has settings, a conversation or usage), with its settings
        and usage since `since`; the busiest first, then by name."""
        async with self._db.reading() as conn:
            settings = await conn.execute(
                select(
                    ChannelSettingsRow.platform,
                    ChannelSettingsRow.workspace,
                    ChannelSettingsRow.channel,
                    ChannelSettingsRow.model,
                    ChannelSettingsRow.persona,
                    ChannelSettingsRow.transcription_mode,
                )
            )
            talked = await conn.execute(
                select(
                    ConversationRow.platform, ConversationRow.workspace, ConversationRow.channel
                ).distinct()
            )
        unset = (None, None, DEFAULT_TRANSCRIPTION_MODE)
        found: dict[ConversationKey, tuple[str | None, str | None, str]] = {}
        for row in talked.all():
            found[ConversationKey(row.platform, row.workspace, row.channel)] = unset
        for row in settings.all():
            key = ConversationKey(row.platform, row.workspace, row.channel)
            found[key] = (row.model, row.persona, row.transcription_mode)
        spent = {
            ConversationKey(u.platform, u.workspace, u.who): (u.requests, u.tokens)
            for u in await self.usage_by_channel(since=since, limit=max(limit, len(found)))
        }
        overviews = []
        for key in found.keys() | spent.keys():
            model, persona, mode = found.get(key, unset)
            requests, tokens = spent.get(key, (0, 0))
            overviews.append(ChannelOverview(key, model, persona, mode, requests, tokens))
        overviews.sort(key=lambda c: (-c.tokens, -c.requests, c.key.platform, c.key.channel))
        return overviews[:limit]

    async def _usage_by(self, column: Any, since: float, limit: int) -> list[Usage]:
        tokens = func.coalesce(func.sum(UsageRecordRow.total_tokens), 0).label("tokens")
        group = (UsageRecordRow.platform, UsageRecordRow.workspace, column)
        async with self._db.reading() as conn:
            rows = await conn.execute(
                select(*group, func.count().label("requests"), tokens)
                .where(UsageRecordRow.created_at >= since)
                .group_by(*group)
                .order_by(tokens.desc(), *group)
                .limit(limit)
            )
        return [Usage(r[0], r[1], r[2], int(r.requests), int(r.tokens)) for r in rows.all()]

    def _day(self, column: Any) -> Any:
        """The UTC day of an epoch-seconds column (PostgreSQL rounds when it casts a float, so
        it floors first; SQLite's cast truncates, the same for times after 1970)."""
        if self.engine.dialect.name == "postgresql":
            return cast(func.floor(column / DAY), BigInteger)
        return cast(column / DAY, Integer)

"""Budgets, the daily usage counters they are checked against, and admin alerts' last times:
the queries behind `/budget`, the pre-request check and the admin page (one copy of the data).

Spending is counted per UTC day in `usage_daily` (one row per user and per channel per day),
added to in the transaction that stores each usage record: a check reads one row for a daily
budget and at most 31 for a monthly one, whatever the traffic (bench/README has the figures
against summing `usage_records`)."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, bindparam, case, delete, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from bot.store.database import Database, Session
from bot.store.models import AdminSeenRow, AlertSentRow, BudgetRow, UsageDailyRow

SCOPES = ("user", "channel", "default")
PERIODS = ("day", "month")
SECONDS_PER_DAY = 86400


def day_number(when: float) -> int:
    """The UTC day of an epoch time, as days since 1970-01-01 (`usage_daily.day`)."""
    return int(when // SECONDS_PER_DAY)


@dataclass(frozen=True)
class StoredBudget:
    """A budget as stored: `scope` user/channel/default, `subject` the user or channel id ("" for
    default), `tokens` per `period` (day or month, in UTC)."""

    platform: str
    workspace: str
    scope: str
    subject: str
    tokens: int
    period: str
    updated_by: str
    updated_at: float


@dataclass(frozen=True)
class DailyUsage:
    """One user's or channel's requests and tokens on one UTC day (`day`: see `day_number`)."""

    scope: str
    subject: str
    day: int
    requests: int
    tokens: int
    platform: str = ""
    workspace: str = ""


class BudgetStore:
    """Budget rows, spending per day and alert claims. `Store.budgets` is one."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._dialect = db.dialect.name

    async def set_budget(
        self,
        platform: str,
        workspace: str,
        scope: str,
        subject: str,
        *,
        tokens: int,
        period: str,
        updated_by: str,
    ) -> StoredBudget:
        """Create or replace a budget. Raise ValueError for an unknown scope or period, or a
        limit below 1."""
        if scope not in SCOPES or period not in PERIODS or tokens < 1:
            raise ValueError(f"bad budget: scope {scope!r}, period {period!r}, tokens {tokens}")
        row: dict[str, Any] = {
            "platform": platform,
            "workspace": workspace,
            "scope": scope,
            "subject": "" if scope == "default" else subject,
            "tokens": tokens,
            "period": period,
            "updated_by": updated_by,
            "updated_at": time.time(),
        }
        await self._db.write(_budget_upsert(self._dialect), row)
        return StoredBudget(**row)

    async def remove_budget(self, platform: str, workspace: str, scope: str, subject: str) -> bool:
        """Remove a budget; False when there was none."""
        result = await self._db.write(
            delete(BudgetRow).where(
                BudgetRow.platform == platform,
                BudgetRow.workspace == workspace,
                BudgetRow.scope == scope,
                BudgetRow.subject == ("" if scope == "default" else subject),
            )
        )
        return result.rowcount > 0

    async def list_budgets(
        self, platform: str | None = None, workspace: str | None = None
    ) -> list[StoredBudget]:
        """Every budget (of a platform, of a workspace), in a stable order."""
        query = select(BudgetRow)
        if platform is not None:
            query = query.where(BudgetRow.platform == platform)
        if workspace is not None:
            query = query.where(BudgetRow.workspace == workspace)
        query = query.order_by(
            BudgetRow.platform, BudgetRow.workspace, BudgetRow.scope, BudgetRow.subject
        )
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [_budget(row) for row in rows]

    async def applying(
        self, platform: str, workspace: str, *, user_id: str, channel: str
    ) -> list[StoredBudget]:
        """The budgets that may apply to `user_id` asking in `channel`: theirs, the default
        and the channel's (one indexed read; usually none)."""
        async with self._db.reading() as conn:
            rows = (
                await conn.execute(
                    _APPLYING,
                    {"platform": platform, "workspace": workspace, "user": user_id, "ch": channel},
                )
            ).all()
        found = [_budget(row) for row in rows]
        return [b for b in found if _belongs(b, user_id, channel)]

    async def standing(
        self,
        platform: str,
        workspace: str,
        *,
        user_id: str,
        channel: str,
        today: int,
        month_first_day: int,
    ) -> list[tuple[StoredBudget, int]]:
        """As `applying`, each with the tokens spent in its current period (a default budget:
        `user_id`'s), in one read: the check before every TokModel request."""
        query = standing_query(
            platform, workspace, user_id=user_id, channel=channel, today=today,
            month_first_day=month_first_day,
        )  # fmt: skip
        async with self._db.reading() as conn:
            rows = (await conn.execute(*query)).all()
        return standing_found(rows, user_id=user_id, channel=channel)

    async def spent(
        self, platform: str, workspace: str, scope: str, subject: str, *, first_day: int
    ) -> int:
        """Tokens counted for a user (scope "user") or channel ("channel") from `first_day`
        (see `day_number`) up to now."""
        params = {
            "platform": platform,
            "workspace": workspace,
            "scope": scope,
            "subject": subject,
            "first_day": first_day,
        }
        async with self._db.reading() as conn:
            return int((await conn.execute(_SPENT, params)).scalar_one())

    async def daily_usage(
        self,
        platform: str | None = None,
        workspace: str | None = None,
        *,
        since_day: int,
        scope: str | None = None,
        subject: str | None = None,
    ) -> list[DailyUsage]:
        """Requests and tokens per UTC day since `since_day`, per user and channel, oldest
        first: what the admin page charts. Narrowed to a platform, a workspace, a scope ("user"
        or "channel": every request counts once in each), a subject; None: all of them (without
        a platform, it reads the table's rows since that day, for the admin page only)."""
        query = select(UsageDailyRow).where(UsageDailyRow.day >= since_day)
        if platform is not None:
            query = query.where(UsageDailyRow.platform == platform)
        if workspace is not None:
            query = query.where(UsageDailyRow.workspace == workspace)
        if scope is not None:
            query = query.where(UsageDailyRow.scope == scope)
        if subject is not None:
            query = query.where(UsageDailyRow.subject == subject)
        query = query.order_by(UsageDailyRow.day, UsageDailyRow.scope, UsageDailyRow.subject)
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [
            DailyUsage(r.scope, r.subject, r.day, r.requests, r.tokens, r.platform, r.workspace)
            for r in rows
        ]

    async def claim_alert(self, kind: str, *, quiet_seconds: float) -> bool:
        """True when this process should send the alert `kind` now: none was sent (by any
        replica) in the last `quiet_seconds`. The claim is one atomic upsert, so two replicas
        seeing the same trouble at once send it once."""
        now = time.time()
        params = {"kind": kind, "now": now, "cutoff": now - quiet_seconds}
        result = await self._db.write(_alert_claim(self._dialect), params)
        return result.scalar_one_or_none() is not None

    async def forget_alert(self, kind: str) -> None:
        """Let `kind` be sent again at once (its delivery failed everywhere)."""
        await self._db.write(delete(AlertSentRow).where(AlertSentRow.kind == kind))

    async def saw_admin(self, platform: str, workspace: str, user_id: str) -> None:
        """Remember a platform admin who used the bot (alerts may DM them)."""
        row = {"platform": platform, "workspace": workspace, "user_id": user_id}
        await self._db.write(_admin_upsert(self._dialect), {**row, "seen_at": time.time()})

    async def admins_seen(self, platform: str, workspace: str) -> list[str]:
        """The admins of a workspace who used the bot (by any replica, ever)."""
        query = select(AdminSeenRow.user_id).where(
            AdminSeenRow.platform == platform, AdminSeenRow.workspace == workspace
        )
        async with self._db.reading() as conn:
            return [str(u) for u in (await conn.execute(query)).scalars()]


async def count_daily(conn: Session, usage_row: Mapping[str, Any], *, dialect: str) -> None:
    """Add one usage record (the values of a `usage_records` row) to its user's and channel's
    counters for its UTC day, inside the caller's transaction."""
    await conn.execute(*daily_count(usage_row, dialect=dialect))


def daily_count(usage_row: Mapping[str, Any], *, dialect: str) -> tuple[Any, dict[str, Any]]:
    """`count_daily`'s statement and parameters (for `Database.write_each`)."""
    return _daily_upsert(dialect), _daily_params(usage_row)


def _daily_params(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "platform": row["platform"],
        "workspace": row["workspace"],
        "user": row["user_id"],
        "ch": row["channel"],
        "day": day_number(row["created_at"]),
        "tokens": row["total_tokens"],
    }


def _budget(row: Any) -> StoredBudget:
    return StoredBudget(
        row.platform,
        row.workspace,
        row.scope,
        row.subject,
        int(row.tokens),
        row.period,
        row.updated_by,
        float(row.updated_at),
    )


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


@functools.cache
def _budget_upsert(dialect: str) -> Any:
    statement = _insert(dialect)(BudgetRow)
    changed = ("tokens", "period", "updated_by", "updated_at")
    return statement.on_conflict_do_update(
        index_elements=["platform", "workspace", "scope", "subject"],
        set_={name: statement.excluded[name] for name in changed},
    )


@functools.cache
def _daily_upsert(dialect: str) -> Any:
    """Both counters of one usage record in one statement (parameters: `_daily_params`)."""
    rows: Sequence[dict[str, Any]] = [
        {
            "platform": bindparam("platform"),
            "workspace": bindparam("workspace"),
            "scope": scope,
            "subject": bindparam(name),
            "day": bindparam("day"),
            "requests": 1,
            "tokens": bindparam("tokens"),
        }
        for scope, name in (("user", "user"), ("channel", "ch"))
    ]
    statement = _insert(dialect)(UsageDailyRow).values(list(rows))
    return statement.on_conflict_do_update(
        index_elements=["platform", "workspace", "scope", "subject", "day"],
        set_={
            "requests": UsageDailyRow.requests + statement.excluded.requests,
            "tokens": UsageDailyRow.tokens + statement.excluded.tokens,
        },
    )


@functools.cache
def _admin_upsert(dialect: str) -> Any:
    statement = _insert(dialect)(AdminSeenRow)
    return statement.on_conflict_do_update(
        index_elements=["platform", "workspace", "user_id"],
        set_={"seen_at": statement.excluded.seen_at},
    )


@functools.cache
def _alert_claim(dialect: str) -> Any:
    statement = _insert(dialect)(AlertSentRow).values(
        kind=bindparam("kind"), sent_at=bindparam("now")
    )
    return statement.on_conflict_do_update(
        index_elements=["kind"],
        set_={"sent_at": statement.excluded.sent_at},
        where=AlertSentRow.sent_at <= bindparam("cutoff"),
    ).returning(AlertSentRow.kind)


#: The user's, the channel's and the default budget, by at most nine primary-key lookups (IN on
#: both columns; an OR of the three pairs made SQLite read every budget of the workspace). The
#: pairs that do not belong together are dropped by `_belongs`.
_APPLYING = select(BudgetRow).where(
    BudgetRow.platform == bindparam("platform"),
    BudgetRow.workspace == bindparam("workspace"),
    # (bound values, not a literal list: that is expanded on every run, ~0.1 ms of CPU)
    BudgetRow.scope.in_(tuple(literal(scope, String) for scope in ("user", "channel", "default"))),
    BudgetRow.subject.in_((bindparam("user"), bindparam("ch"), "")),
)


def standing_query(
    platform: str, workspace: str, *, user_id: str, channel: str, today: int,
    month_first_day: int,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """`BudgetStore.standing`'s statement and parameters, for a caller that reads it in one
    trip with other statements (`Store.answer_context`); `standing_found` reads its rows."""
    params = {
        "platform": platform,
        "workspace": workspace,
        "user": user_id,
        "ch": channel,
        "today": today,
        "month_first": month_first_day,
    }
    return _STANDING, params


def standing_found(
    rows: Sequence[Any], *, user_id: str, channel: str
) -> list[tuple[StoredBudget, int]]:
    """The rows of `standing_query` as `BudgetStore.standing` returns them."""
    found = [(_budget(row), int(row.spent)) for row in rows]
    return [(b, spent) for b, spent in found if _belongs(b, user_id, channel)]


def _belongs(budget: StoredBudget, user_id: str, channel: str) -> bool:
    wanted = {"user": user_id, "channel": channel, "default": ""}
    return wanted[budget.scope] == budget.subject


_IS_DEFAULT = BudgetRow.scope == "default"
#: Tokens spent in a budget's current period (correlated with its row in `_STANDING`).
_SPENT_IN_PERIOD = (
    select(func.coalesce(func.sum(UsageDailyRow.tokens), 0))
    .where(
        UsageDailyRow.platform == BudgetRow.platform,
        UsageDailyRow.workspace == BudgetRow.workspace,
        UsageDailyRow.scope == case((_IS_DEFAULT, "user"), else_=BudgetRow.scope),
        UsageDailyRow.subject
        == case((_IS_DEFAULT, bindparam("user", type_=String)), else_=BudgetRow.subject),
        UsageDailyRow.day
        >= case(
            (BudgetRow.period == "day", bindparam("today", type_=Integer)),
            else_=bindparam("month_first", type_=Integer),
        ),
    )
    .correlate(BudgetRow)
    .scalar_subquery()
)
_STANDING = _APPLYING.add_columns(_SPENT_IN_PERIOD.label("spent"))
_SPENT = select(func.coalesce(func.sum(UsageDailyRow.tokens), 0)).where(
    UsageDailyRow.platform == bindparam("platform"),
    UsageDailyRow.workspace == bindparam("workspace"),
    UsageDailyRow.scope == bindparam("scope"),
    UsageDailyRow.subject == bindparam("subject"),
    UsageDailyRow.day >= bindparam("first_day"),
)

"""Token budgets: per user, per channel, and a default for every user, in each platform's
workspace (Slack team, Discord guild), per UTC day or calendar month.

`Budgets` is the one API for `/budget`, the check before every TokModel request and the admin
page: parse a limit ("200k/day", "5M/month", "off"), set / remove / list budgets, and the status
of a person's and a channel's budgets (spent, left, when the period resets).

What counts: the tokens TokModel reports for each request; where it reports none (images,
speech, transcription), the estimates of `media_tokens`. A request is refused when its own
estimate (`request_estimate`) would take a budget past its limit; its answer may still pass the
limit by its length (unknown beforehand), and two replicas checking at the same instant may both
let one request through: budgets are caps for a team's spending, not exact to the token."""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.alerts import Alert, Alerts
from bot.conversation import estimate_tokens
from bot.domain import Attachment, ConversationKey
from bot.errors import UserError
from bot.store import Store
from bot.store.budgets import (
    SECONDS_PER_DAY,
    StoredBudget,
    day_number,
    standing_found,
    standing_query,
)

#: An admin alert goes out when a budget's spending passes this share of its limit.
ALERT_FRACTION = 0.8

#: Images: TokModel reports no usage; counted as this many tokens per 1024×1024 image, in
#: proportion to its pixels (256×256: 250; 1792×1024: 7,000).
IMAGE_TOKENS_PER_MEGAPIXEL = 4000
#: Transcription: TokModel reports no usage; counted as one token per this many bytes of
#: audio (a one-minute voice message of 100–500 KB counts 100–500 tokens).
AUDIO_BYTES_PER_TOKEN = 1000
#: Audio whose size the platform does not tell is counted as this many bytes.
AUDIO_BYTES_UNKNOWN = 250_000

_SUFFIXES = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
_LIMIT = re.compile(
    r"^\s*(?P<number>\d[\d,_]*(?:\.\d+)?)\s*(?P<suffix>[kmg]?)\s*(?:tokens?)?\s*"
    r"(?:/|\s+per\s+|\s+a\s+|\s+)\s*(?P<period>day|daily|month|monthly)\s*$",
    re.IGNORECASE,
)
_MAX_TOKENS = 10**12
LIMIT_HELP = "Write a limit like `200k/day`, `5M/month` or `150000/day`, or `off`."


@dataclass(frozen=True)
class Limit:
    """A budget's size: `tokens` per `period` ("day" or "month")."""

    tokens: int
    period: str


def parse_limit(text: str) -> Limit | None:
    """`200k/day` → Limit(200000, "day"); `5M/month`; `off` (also none, remove) → None.
    Raise UserError, with the accepted forms, for anything else."""
    if text.strip().lower() in ("off", "none", "remove", "0"):
        return None
    match = _LIMIT.match(text)
    if match is None:
        raise UserError(f"I can't read `{text.strip()[:40]}` as a budget. {LIMIT_HELP}")
    number = float(match["number"].replace(",", "").replace("_", ""))
    tokens = round(number * _SUFFIXES[match["suffix"].lower()])
    if not 1 <= tokens <= _MAX_TOKENS:
        raise UserError(f"A budget is between 1 and 1,000G tokens. {LIMIT_HELP}")
    period = "month" if match["period"].lower().startswith("month") else "day"
    return Limit(tokens, period)


def format_tokens(tokens: int) -> str:
    """200000 → "200k", 5000000 → "5M", 1234 → "1,234" (short where it is exact)."""
    for suffix, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if tokens >= size and tokens % (size // 10) == 0:
            return f"{tokens / size:g}{suffix}"
    return f"{tokens:,}"


def describe_limit(tokens: int, period: str) -> str:
    return f"{format_tokens(tokens)} tokens a {period}"


def period_bounds(period: str, now: float) -> tuple[int, float]:
    """The first UTC day (see `day_number`) of the period containing `now`, and when the
    next one starts (epoch seconds)."""
    today = day_number(now)
    if period == "day":
        return today, (today + 1) * SECONDS_PER_DAY
    date = dt.datetime.fromtimestamp(now, dt.UTC).date()
    first = date.replace(day=1)
    days = calendar.monthrange(date.year, date.month)[1]
    next_first = first + dt.timedelta(days=days)
    epoch = dt.date(1970, 1, 1)
    return (first - epoch).days, (next_first - epoch).days * SECONDS_PER_DAY


def describe_reset(resets_at: float, now: float) -> str:
    """ "00:00 UTC (in 3 h 12 min)", or with the date when it is not today."""
    when = dt.datetime.fromtimestamp(resets_at, dt.UTC)
    minutes = max(1, round((resets_at - now) / 60))
    if minutes < 60:
        wait = f"{minutes} min"
    elif minutes < 48 * 60:
        wait = f"{minutes // 60} h {minutes % 60} min"
    else:
        wait = f"{round(minutes / 1440)} days"
    day = "" if resets_at - now <= SECONDS_PER_DAY else f" on {when:%-d %b}"
    return f"{when:%H:%M} UTC{day} (in {wait})"


@dataclass(frozen=True)
class BudgetStatus:
    """Where a budget stands for one person or channel: `spent` in the current period,
    `left` before its limit (0 at or past it), and when the period resets."""

    budget: StoredBudget
    #: The user or channel whose spending is counted (for a default budget: the person's id).
    subject: str
    spent: int
    resets_at: float

    @property
    def left(self) -> int:
        return max(0, self.budget.tokens - self.spent)

    @property
    def fraction(self) -> float:
        return self.spent / self.budget.tokens

    @property
    def name(self) -> str:
        """How a refusal names it: "your daily budget", "this channel's monthly budget"."""
        period = "daily" if self.budget.period == "day" else "monthly"
        if self.budget.scope == "channel":
            return f"this channel's {period} budget"
        return f"your {period} budget"

    def line(self, now: float) -> str:
        """One line for `/budget`: limit, spent, left, reset."""
        return (
            f"{describe_limit(self.budget.tokens, self.budget.period)}: "
            f"{self.spent:,} spent, {self.left:,} left; "
            f"resets {describe_reset(self.resets_at, now)}"
        )


@dataclass(frozen=True)
class Statuses:
    """The budgets that apply to a person asking in a channel (None: no such budget)."""

    person: BudgetStatus | None
    channel: BudgetStatus | None

    def all(self) -> list[BudgetStatus]:
        return [s for s in (self.person, self.channel) if s is not None]


class BudgetExceeded(UserError):
    """A request refused before TokModel was asked; its text is the private reply."""

    def __init__(self, status: BudgetStatus, now: float) -> None:
        self.status = status
        budget = status.budget
        left = f"{status.left:,} tokens left" if status.left else "nothing left"
        default = " (the default for everyone)" if budget.scope == "default" else ""
        super().__init__(
            f"🪙 Not sent: this would go past {status.name} of "
            f"{describe_limit(budget.tokens, budget.period)}{default}: {left}. "
            f"It resets at {describe_reset(status.resets_at, now)}. "
            "An admin can change it with `/budget`."
        )


class Budgets:
    """Budgets of every workspace, checked against the daily counters in the database (so they
    hold across replicas). `alerts` (optional) is told when a budget passes 80 %."""

    def __init__(self, store: Store, alerts: Alerts | None = None) -> None:
        self._store = store
        self._alerts = alerts

    async def set(
        self, platform: str, workspace: str, scope: str, subject: str, limit: Limit, *, by: str
    ) -> StoredBudget:
        """Create or replace the budget of a user (`scope` "user", `subject` their id), a
        channel ("channel", its id) or the default for every user ("default", "")."""
        return await self._store.budgets.set_budget(
            platform, workspace, scope, subject, tokens=limit.tokens, period=limit.period,
            updated_by=by,
        )  # fmt: skip

    async def remove(self, platform: str, workspace: str, scope: str, subject: str) -> bool:
        """Remove a budget; False when there was none."""
        return await self._store.budgets.remove_budget(platform, workspace, scope, subject)

    async def list(
        self, platform: str | None = None, workspace: str | None = None
    ) -> Sequence[StoredBudget]:
        """Every budget (of a platform, of a workspace)."""
        return await self._store.budgets.list_budgets(platform, workspace)

    async def status(
        self, budget: StoredBudget, *, user_id: str | None = None, now: float | None = None
    ) -> BudgetStatus:
        """Where `budget` stands now; a default budget counts `user_id`'s spending (without
        one, its status counts nothing spent)."""
        now = time.time() if now is None else now
        first_day, resets_at = period_bounds(budget.period, now)
        scope, subject = budget.scope, budget.subject
        if scope == "default":
            scope, subject = "user", user_id or ""
        spent = 0
        if subject:
            spent = await self._store.budgets.spent(
                budget.platform, budget.workspace, scope, subject, first_day=first_day
            )
        return BudgetStatus(budget, subject, spent, resets_at)

    async def statuses(
        self, key: ConversationKey, user_id: str, *, now: float | None = None
    ) -> Statuses:
        """The person's budget (their own, else the default) and the channel's, where they
        stand now, in one read."""
        now = time.time() if now is None else now
        found = await self._store.budgets.standing(
            key.platform,
            key.workspace,
            user_id=user_id,
            channel=key.channel,
            today=day_number(now),
            month_first_day=period_bounds("month", now)[0],
        )
        return _statuses(found, key, user_id, now)

    def standing_query(
        self, key: ConversationKey, user_id: str, *, now: float
    ) -> tuple[Any, dict[str, Any]]:
        """The statement `check_found` wants the rows of, for a caller that reads it beside
        others in one trip to the database (`/ask`: with its context)."""
        return standing_query(
            key.platform, key.workspace, user_id=user_id, channel=key.channel,
            today=day_number(now), month_first_day=period_bounds("month", now)[0],
        )  # fmt: skip

    def check_found(
        self, key: ConversationKey, user_id: str, rows: Sequence[Any], *, estimate: int,
        now: float,
    ) -> Sequence[BudgetStatus]:  # fmt: skip
        """As `check`, on the rows of `standing_query` read at `now`; returns the budgets
        that apply, where they stood (for `after_usage`'s `seen`)."""
        found = standing_found(rows, user_id=user_id, channel=key.channel)
        statuses = _statuses(found, key, user_id, now).all()
        _judge(statuses, estimate, now)
        return statuses

    async def check(self, key: ConversationKey, user_id: str, *, estimate: int) -> bool:
        """Before a TokModel request: raise BudgetExceeded when `estimate` more tokens would
        take the person's or the channel's budget past its limit. Returns whether any budget
        applies (none: `after_usage` need not read them again)."""
        now = time.time()
        return _judge((await self.statuses(key, user_id, now=now)).all(), estimate, now)

    async def after_usage(
        self,
        key: ConversationKey,
        user_id: str,
        *,
        budgeted: bool = True,
        seen: Sequence[BudgetStatus] | None = None,
        tokens: int = 0,
    ) -> None:
        """After a request's usage is stored: tell the admins about a budget that passed 80 %
        (once per budget and period, across replicas). `budgeted=False`: the check before the
        request found no budget, so none is read again (a budget set in between is seen by the
        next request's alert check: one read less per answer, issue 16). `seen`: where the
        budgets stood at that check, which with the request's `tokens` says where they stand
        now without a read (spending by others meanwhile is seen by the next request's)."""
        if self._alerts is None or not budgeted:
            return
        now = time.time()
        if seen is not None:
            statuses = [dataclasses.replace(s, spent=s.spent + tokens) for s in seen]
        else:
            statuses = (await self.statuses(key, user_id, now=now)).all()
        for status in statuses:
            if status.fraction >= ALERT_FRACTION:
                self._alerts.notify(_budget_alert(status, now), quiet_seconds=_period(status))


def _statuses(
    found: Sequence[tuple[StoredBudget, int]], key: ConversationKey, user_id: str, now: float
) -> Statuses:
    if not found:
        return Statuses(None, None)
    by_scope = {budget.scope: (budget, spent) for budget, spent in found}
    person = by_scope.get("user") or by_scope.get("default")
    channel = by_scope.get("channel")
    return Statuses(
        _status(person, user_id, now) if person else None,
        _status(channel, key.channel, now) if channel else None,
    )


def _judge(statuses: Sequence[BudgetStatus], estimate: int, now: float) -> bool:
    """Raise BudgetExceeded for the first budget `estimate` more tokens would pass; return
    whether any applies."""
    for status in statuses:
        if status.spent + max(1, estimate) > status.budget.tokens:
            raise BudgetExceeded(status, now)
    return bool(statuses)


def _status(found: tuple[StoredBudget, int], subject: str, now: float) -> BudgetStatus:
    budget, spent = found
    return BudgetStatus(budget, subject, spent, period_bounds(budget.period, now)[1])


def _period(status: BudgetStatus) -> float:
    """How long an alert about this budget stays sent: until its period resets (and an hour)."""
    return status.resets_at - time.time() + 3600


def _budget_alert(status: BudgetStatus, now: float) -> Alert:
    budget = status.budget
    first_day, _ = period_bounds(budget.period, now)
    kind = ":".join(
        ("budget", budget.platform, budget.workspace, budget.scope, status.subject, str(first_day))
    )
    if len(kind) > 200:  # (alerts_sent.kind holds 255; platform ids are far shorter)
        kind = "budget:" + hashlib.sha256(kind.encode()).hexdigest()
    whose = {
        "user": f"user {status.subject}'s",
        "default": f"user {status.subject}'s (default)",
        "channel": f"channel {status.subject}'s",
    }[budget.scope]
    return Alert(
        kind,
        f"🪙 tokbot: {whose} {'daily' if budget.period == 'day' else 'monthly'} budget "
        f"({describe_limit(budget.tokens, budget.period)}) is {status.fraction:.0%} spent "
        f"({status.spent:,} tokens; {status.left:,} left). "
        f"It resets at {describe_reset(status.resets_at, now)}.",
        platform=budget.platform,
        workspace=budget.workspace,
    )


def request_estimate(command: str, text: str, options: Mapping[str, str], image_size: str) -> int:
    """Tokens a request is expected to cost, before it is sent (the answer's length is not
    known: a question counts its own tokens)."""
    if command == "imagine":
        return image_tokens(options.get("size", image_size))
    if command in ("ask", "tts"):
        return estimate_tokens(text)
    return 1


def image_tokens(size: str) -> int:
    """An image's count (see IMAGE_TOKENS_PER_MEGAPIXEL); an unreadable size counts 1024×1024."""
    width, _, height = size.partition("x")
    try:
        pixels = int(width) * int(height)
    except ValueError:
        pixels = 1024 * 1024
    return max(1, round(pixels * IMAGE_TOKENS_PER_MEGAPIXEL / (1024 * 1024)))


def media_tokens(
    command: str,
    text: str,
    options: Mapping[str, str],
    attachments: Sequence[Attachment],
    image_size: str,
) -> int:
    """Tokens a media request counts when TokModel reports no usage: an image by its size,
    speech by its text (about four characters a token), a transcription by its audio's bytes."""
    if command == "imagine":
        return image_tokens(options.get("size", image_size))
    if command == "tts":
        return estimate_tokens(text)
    if command in ("transcribe", "voice"):
        size = next((a.size for a in attachments if a.size), None) or AUDIO_BYTES_UNKNOWN
        return max(1, size // AUDIO_BYTES_PER_TOKEN)
    return 0

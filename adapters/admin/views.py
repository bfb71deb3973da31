"""The admin pages: overview, channels, users, health. Every figure comes from the store
queries the commands use, and every change goes through the same store calls and checks as
`/model`, `/persona` and `/transcription`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from adapters.admin.app import PREFIX, AdminApp, redirect
from adapters.admin.charts import bar_chart, day_label
from adapters.doctor import collect_findings
from bot.budgets import format_tokens, parse_limit
from bot.domain import ConversationKey
from bot.errors import UserError
from bot.handlers.channel import MAX_PERSONA_CHARS, check_chat_model
from bot.store import TRANSCRIPTION_MODES, ChannelFeedback
from bot.store.budgets import StoredBudget
from bot.tokmodel.errors import TokModelError
from bot.wording import describe_tokmodel_error

DAYS = 30
TOP = 10
#: Who the store records as having changed a channel's settings from this page.
UPDATED_BY = "admin-page"
#: What an admin should know about each TokModel status (the README's table, shortened).
STATUS_MEANING = {
    0: "no answer (timeout or connection failure)",
    400: "a request TokModel could not take",
    401: "the API key was rejected: fix TOKMODEL_API_KEY",
    403: "out of credits: top up the account",
    404: "unknown model or path",
    429: "rate limited by TokModel",
}


@dataclass(frozen=True)
class UserRow:
    """One user on the users page: usage in the last 30 days, their own budget ("" for none), their
    workspace's default, and where the one that applies stands."""

    platform: str
    workspace: str
    user: str
    requests: int
    tokens: int
    budget: str
    default: str
    status: str


class Pages:
    def __init__(self, admin: AdminApp) -> None:
        self.admin = admin
        self.store = admin.core.store

    async def overview(self, request: web.Request) -> web.StreamResponse:
        now = time.time()
        since = _days_ago(DAYS)
        days = await self.store.daily_activity(DAYS, now=now)
        numbers = [d.day for d in days]
        charts = [
            bar_chart("Requests per day", numbers, [d.requests for d in days],
                      unit="requests", color="#3465a4"),
            bar_chart("Tokens per day", numbers, [d.tokens for d in days],
                      unit="tokens", color="#4e9a06"),
            bar_chart("TokModel errors per day", numbers, [d.errors for d in days],
                      unit="errors", color="#cc0000"),
        ]  # fmt: skip
        errors = [
            (status, count, _meaning(status))
            for status, count in await self.store.errors_by_status(since=since)
        ]
        return self.admin.render(
            request,
            "overview.html",
            title="Overview",
            days=DAYS,
            first_day=day_label(numbers[0]),
            last_day=day_label(numbers[-1]),
            totals={
                "requests": sum(d.requests for d in days),
                "tokens": sum(d.tokens for d in days),
                "errors": sum(d.errors for d in days),
            },
            charts=charts,
            channels=await self.store.usage_by_channel(since=since, limit=TOP),
            users=await self.store.usage_by_user(since=since, limit=TOP),
            errors=errors,
            feedback=await self._feedback(since),
            budgets=await self._budget_statuses(now),
        )

    async def channels(self, request: web.Request) -> web.StreamResponse:
        return await self._channels_page(request, notice=_saved(request))

    async def edit_channel(self, request: web.Request) -> web.StreamResponse:
        form = await self.admin.form(request)
        try:
            key = ConversationKey(
                _field(form, "platform"), _field(form, "workspace"), _field(form, "channel")
            )
            changes = await self._channel_changes(key, form)
        except UserError as exc:
            return await self._channels_page(request, error=str(exc).replace("`", ""), status=400)
        except TokModelError as exc:
            error = "TokModel could not list its models: " + describe_tokmodel_error(exc)
            return await self._channels_page(request, error=error, status=502)
        if changes:
            await self.store.update_channel_settings(key, updated_by=UPDATED_BY, **changes)
        budget = str(form.get("budget", ""))
        try:
            await self._set_budget(key.platform, key.workspace, "channel", key.channel, budget)
        except UserError as exc:
            return await self._channels_page(request, error=str(exc).replace("`", ""), status=400)
        return redirect(f"{PREFIX}/channels?saved={key.platform}:{key.channel}")

    async def users(self, request: web.Request) -> web.StreamResponse:
        return await self._users_page(request, notice=_saved(request))

    async def edit_user(self, request: web.Request) -> web.StreamResponse:
        """A user's budget, or (`scope` default) the default budget of a workspace."""
        form = await self.admin.form(request)
        try:
            platform, workspace = _field(form, "platform"), _field(form, "workspace")
            scope = "default" if form.get("scope") == "default" else "user"
            subject = "" if scope == "default" else _field(form, "user")
            await self._set_budget(platform, workspace, scope, subject, str(form.get("budget", "")))
        except UserError as exc:
            return await self._users_page(request, error=str(exc).replace("`", ""), status=400)
        who = subject or f"default of {workspace}"
        return redirect(f"{PREFIX}/users?saved={platform}:{who}")

    async def health(self, request: web.Request) -> web.StreamResponse:
        findings = await collect_findings(self.admin.settings)
        return self.admin.render(
            request,
            "health.html",
            title="Health",
            findings=findings,
            problems=sum(not f.ok for f in findings),
            # What the running bot last heard from TokModel (also in /healthz).
            live_problem=self.admin.core.alerts.problem,
        )

    async def _users_page(
        self, request: web.Request, *, notice: str = "", error: str = "", status: int = 200
    ) -> web.StreamResponse:
        budgets = await self.admin.core.budgets.list()
        own = {(b.platform, b.workspace, b.subject): b for b in budgets if b.scope == "user"}
        defaults = {(b.platform, b.workspace): b for b in budgets if b.scope == "default"}
        recent = await self.store.usage_by_user(since=_days_ago(DAYS), limit=500)
        usage = {(u.platform, u.workspace, u.who): u for u in recent}
        rows = []
        for platform, workspace, user in sorted(usage.keys() | own.keys()):
            budget = own.get((platform, workspace, user))
            default = defaults.get((platform, workspace))
            used = usage.get((platform, workspace, user))
            rows.append(
                UserRow(
                    platform,
                    workspace,
                    user,
                    used.requests if used else 0,
                    used.tokens if used else 0,
                    budget_text(budget),
                    budget_text(default),
                    await self._status_line(budget or default, user_id=user),
                )
            )
        rows.sort(key=lambda r: (-r.tokens, r.platform, r.user))
        workspaces = sorted({(r.platform, r.workspace) for r in rows} | defaults.keys())
        return self.admin.render(
            request,
            "users.html",
            status=status,
            title="Users",
            users=rows,
            defaults=[(p, w, budget_text(defaults.get((p, w)))) for p, w in workspaces],
            days=DAYS,
            notice=notice,
            error=error,
        )

    async def _set_budget(
        self, platform: str, workspace: str, scope: str, subject: str, text: str
    ) -> None:
        """Set a budget as `/budget` does ("200k/day", "5M/month"; blank or "off" removes it);
        nothing happens when it is unchanged."""
        text = text.strip()
        budgets = self.admin.core.budgets
        current = {(b.scope, b.subject): b for b in await budgets.list(platform, workspace)}.get(
            (scope, subject)
        )
        if text == budget_text(current) or (not text and current is None):
            return
        limit = parse_limit(text) if text else None
        if limit is None:
            await budgets.remove(platform, workspace, scope, subject)
        else:
            await budgets.set(platform, workspace, scope, subject, limit, by=UPDATED_BY)

    async def _status_line(self, budget: StoredBudget | None, *, user_id: str | None = None) -> str:
        if budget is None:
            return ""
        return (await self.admin.core.budgets.status(budget, user_id=user_id)).line(time.time())

    async def _channels_page(
        self, request: web.Request, *, notice: str = "", error: str = "", status: int = 200
    ) -> web.StreamResponse:
        try:
            models = [m.id for m in await self.admin.core.tokmodel.list_models() if m.is_chat]
        except TokModelError:  # the page still works; the model is then typed, not picked
            models = []
        budgets = {
            (b.platform, b.workspace, b.subject): b
            for b in await self.admin.core.budgets.list()
            if b.scope == "channel"
        }
        channels = []
        for channel in await self.store.channel_overviews(since=_days_ago(DAYS)):
            key = channel.key
            budget = budgets.get((key.platform, key.workspace, key.channel))
            channels.append((channel, budget_text(budget), await self._status_line(budget)))
        return self.admin.render(
            request,
            "channels.html",
            status=status,
            title="Channels",
            channels=channels,
            default_model=self.admin.settings.chat_model,
            models=models,
            modes=TRANSCRIPTION_MODES,
            days=DAYS,
            max_persona=MAX_PERSONA_CHARS,
            notice=notice,
            error=error,
        )

    async def _channel_changes(self, key: ConversationKey, form: Any) -> dict[str, Any]:
        """The settings the form changes (blank: back to the default), checked as the
        commands check them; a model is only checked with TokModel when it changes."""
        current = await self.store.channel_settings(key)
        model = _field(form, "model", required=False) or None
        persona = str(form.get("persona", "")).strip() or None
        mode = _field(form, "transcription", required=False) or current.transcription_mode
        changes: dict[str, Any] = {}
        if model != current.model:
            if model is not None:
                await check_chat_model(self.admin.core, model)
            changes["model"] = model
        if persona != current.persona:
            if persona is not None and len(persona) > MAX_PERSONA_CHARS:
                raise UserError(
                    f"That persona is {len(persona):,} characters; the limit is "
                    f"{MAX_PERSONA_CHARS:,}."
                )
            changes["persona"] = persona
        if mode != current.transcription_mode:
            if mode not in TRANSCRIPTION_MODES:
                raise UserError("Choose one of: off, transcribe, translate (to English).")
            changes["transcription_mode"] = mode
        return changes

    async def _budget_statuses(self, now: float) -> list[tuple[StoredBudget, str, float]]:
        """Every user and channel budget with where it stands (most spent first), and each
        default budget (whose spending is per person: see the users page)."""
        found = []
        for budget in await self.admin.core.budgets.list():
            if budget.scope == "default":
                found.append((budget, "per person: see Users", -1.0))
                continue
            status = await self.admin.core.budgets.status(budget, now=now)
            found.append((budget, status.line(now), status.fraction))
        found.sort(key=lambda b: (-b[2], b[0].platform, b[0].subject))
        return found

    async def _feedback(self, since: float) -> list[ChannelFeedback]:
        """Answers and the 👍/👎 on them per channel since `since` (the query admins' `/usage`
        lists), busiest first."""
        return await self.store.feedback_by_channel(since=since, limit=TOP)


def budget_text(budget: StoredBudget | None) -> str:
    """A budget as `/budget` takes it ("200k/day"); "" for none."""
    return "" if budget is None else f"{format_tokens(budget.tokens)}/{budget.period}"


def _field(form: Any, name: str, *, required: bool = True) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise UserError(f"The form is missing {name}.")
    if len(text) > 255:
        raise UserError(f"{name} is too long.")
    return text


def _saved(request: web.Request) -> str:
    """What the redirect after a change names (a channel or user id; shortened, since anyone
    can put text in a link)."""
    return request.query.get("saved", "")[:120]


def _days_ago(days: int) -> float:
    return time.time() - days * 86_400


def _meaning(status: int) -> str:
    if status >= 500:
        return "TokModel failed (server error)"
    return STATUS_MEANING.get(status, "")

"""The admin pages: overview, channels, users, health. Every figure comes from the store
queries the commands use, and every change goes through the same store calls and checks as
`/model`, `/persona` and `/transcription`."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from adapters.admin.app import PREFIX, AdminApp, redirect
from adapters.admin.charts import bar_chart, day_label
from adapters.doctor import collect_findings
from bot.domain import ConversationKey
from bot.errors import UserError
from bot.handlers.channel import MAX_PERSONA_CHARS, check_chat_model
from bot.store import TRANSCRIPTION_MODES
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


class Pages:
    def __init__(self, admin: AdminApp) -> None:
        self.admin = admin
        self.store = admin.core.store

    async def overview(self, request: web.Request) -> web.StreamResponse:
        now = time.time()
        since = now - DAYS * 86_400
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
            feedback=await self._feedback_counts(since),
        )

    async def channels(self, request: web.Request) -> web.StreamResponse:
        return await self._channels_page(request, notice=request.query.get("saved", ""))

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
        return redirect(f"{PREFIX}/channels?saved={key.platform}:{key.channel}")

    async def users(self, request: web.Request) -> web.StreamResponse:
        return self.admin.render(
            request,
            "users.html",
            title="Users",
            users=await self.store.usage_by_user(limit=500),
        )

    async def health(self, request: web.Request) -> web.StreamResponse:
        findings = await collect_findings(self.admin.settings)
        return self.admin.render(
            request,
            "health.html",
            title="Health",
            findings=findings,
            problems=sum(not f.ok for f in findings),
        )

    async def _channels_page(
        self, request: web.Request, *, notice: str = "", error: str = "", status: int = 200
    ) -> web.StreamResponse:
        try:
            models = [m.id for m in await self.admin.core.tokmodel.list_models() if m.is_chat]
        except TokModelError:  # the page still works; the model is then typed, not picked
            models = []
        return self.admin.render(
            request,
            "channels.html",
            status=status,
            title="Channels",
            channels=await self.store.channel_overviews(),
            default_model=self.admin.settings.chat_model,
            models=models,
            modes=TRANSCRIPTION_MODES,
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

    async def _feedback_counts(self, since: float) -> list[tuple[str, int]] | None:
        """Feedback on answers (👍/👎) since `since`, once the store counts it; None until then.
        Hook: the feedback branch's store query goes here."""
        counts = getattr(self.store, "feedback_counts", None)
        if counts is None:
            return None
        return list(await counts(since=since))


def _field(form: Any, name: str, *, required: bool = True) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise UserError(f"The form is missing {name}.")
    if len(text) > 255:
        raise UserError(f"{name} is too long.")
    return text


def _meaning(status: int) -> str:
    if status >= 500:
        return "TokModel failed (server error)"
    return STATUS_MEANING.get(status, "")

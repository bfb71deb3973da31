"""The Slack adapter: slack-bolt's AsyncApp over HTTP (Events API at `/slack/events`) or Socket
Mode (when SLACK_APP_TOKEN is set)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from adapters.slack import translate
from adapters.slack.alerts import SlackAlerts
from adapters.slack.app import SlackBot
from adapters.slack.errors import error_of
from adapters.web import WebServer
from bot.core import Core
from bot.settings import Settings, SettingsError

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


class SlackAdapter:
    """Lifecycle per `adapters.base.Adapter`. In HTTP mode the `/slack/events` route is added to
    `web` at construction (the web server starts before `start` is called)."""

    name = "slack"

    def __init__(
        self,
        core: Core,
        settings: Settings,
        web: WebServer | None = None,
        *,
        edit_interval: float = 1.0,
        connect_timeout: float = 30.0,
        drain_timeout: float = 10.0,
        edit_window: float = 60.0,
        budget_share: int = 1,
    ) -> None:
        if settings.slack_bot_token is None or not settings.slack_bot_token.get_secret_value():
            raise SettingsError("SLACK_BOT_TOKEN is not set (xoxb-…, from OAuth & Permissions)")
        self._app_token = (
            settings.slack_app_token.get_secret_value() if settings.slack_app_token else ""
        )
        secret = (
            settings.slack_signing_secret.get_secret_value()
            if settings.slack_signing_secret
            else ""
        )
        self.socket_mode = bool(self._app_token)
        # (Socket Mode needs no signing secret: nothing arrives over HTTP.)
        self._verifier = SignatureVerifier(secret) if secret else None
        #: The bot's own user id (auth.test at start): its mentions are recognised before bolt.
        self._bot_user_id: str | None = None
        if not self.socket_mode:
            if not secret:
                raise SettingsError(
                    "Slack needs SLACK_SIGNING_SECRET (HTTP mode, Events API at /slack/events) "
                    "or SLACK_APP_TOKEN (Socket Mode, xapp-…)"
                )
            if web is None:
                raise SettingsError("Slack's HTTP mode needs the web server")
        self._connect_timeout = connect_timeout
        self._drain_timeout = drain_timeout
        self._session = aiohttp.ClientSession()
        self.bot = SlackBot(
            core,
            token=settings.slack_bot_token.get_secret_value(),
            signing_secret=secret or None,
            api_url=settings.slack_api_url,
            session=self._session,
            edit_interval=edit_interval,
            edits_per_minute=settings.slack_edits_per_minute,
            edit_window=edit_window,  # the budget's minute (tests shrink it)
            streaming=settings.slack_streaming,
            budget_share=budget_share,  # workers of one `tokbot run` split the budgets
        )
        self.alerts = SlackAlerts(self.bot.client, core.alerts, settings)
        self._core = core
        self._socket: AsyncSocketModeHandler | None = None
        self._started = False
        self._drained = False
        if not self.socket_mode and web is not None:
            web.app.router.add_post(EVENTS_PATH, self._events)
            self.bot.intake.waiting = web.pending_connections

    async def start(self) -> None:
        try:
            auth = await self.bot.client.auth_test()
        except SlackApiError as exc:
            raise SettingsError(_refusal("SLACK_BOT_TOKEN", exc)) from None
        log.info("Slack: signed in as %s in %s", auth.get("user_id"), auth.get("team_id"))
        self._bot_user_id = str(auth.get("user_id") or "") or None
        self.bot.signed_in(auth.get("user_id"), auth.get("bot_id"), auth.get("team_id"))
        self.alerts.team_id = str(auth.get("team_id") or "")
        if self.socket_mode:
            try:  # checks the app token, and gives the WebSocket URL to connect to
                opened = await self.bot.client.apps_connections_open(app_token=self._app_token)
            except SlackApiError as exc:
                raise SettingsError(
                    _refusal(
                        "SLACK_APP_TOKEN",
                        exc,
                        "it needs the connections:write scope, and Socket Mode enabled for the app",
                    )
                ) from None
            self._socket = AsyncSocketModeHandler(
                self.bot.app, self._app_token, logger=logging.getLogger("tokbot.slack.socket")
            )
            self._socket.client.wss_uri = str(opened["url"])
            try:
                await asyncio.wait_for(
                    self._socket.connect_async(),  # type: ignore[no-untyped-call]
                    self._connect_timeout,
                )
            except TimeoutError:
                raise SettingsError(
                    "could not open a Slack Socket Mode connection: check SLACK_APP_TOKEN "
                    "(xapp-…, with the connections:write scope)"
                ) from None
            log.info("Slack: Socket Mode connected")
        else:
            log.info("Slack: HTTP mode, Events API at %s", EVENTS_PATH)
        self._started = True
        self._core.alerts.register(self.alerts)

    async def drain(self, timeout: float) -> None:
        """No new work (HTTP mode answers 503, so Slack retries; Socket Mode disconnects, so
        Slack delivers elsewhere or later), then let the answers in flight finish."""
        self._drained = True
        await self._close_socket()
        await self.bot.drain(timeout)

    async def stop(self) -> None:
        self._started = False
        self._core.alerts.unregister(self.alerts)
        await self._close_socket()
        # After `drain`, whatever is left is cancelled at once.
        await self.bot.drain(0 if self._drained else self._drain_timeout)
        if not self._session.closed:
            await self._session.close()

    async def _close_socket(self) -> None:
        if self._socket is not None:
            socket, self._socket = self._socket, None
            await socket.close_async()  # type: ignore[no-untyped-call]

    async def healthy(self) -> bool:
        if not self._started:
            return False
        if self._socket is not None:
            return bool(await self._socket.client.is_connected())
        return True

    async def _events(self, request: web.Request) -> web.Response:
        with self.bot.intake.acking():
            return await self._event(request)

    async def _event(self, request: web.Request) -> web.Response:
        if self.bot.closing:
            # Slack retries: another replica, or this one after its restart, will answer.
            return web.Response(status=503, text="shutting down")
        if not request.headers.get("X-Slack-Request-Timestamp", "0").isdigit():
            return web.Response(status=401, text="invalid request")  # bolt would answer 500
        body, data, problem = await _read(request)
        if problem is not None:
            log.warning("Slack: refused a malformed request (%s)", problem)
            return web.Response(status=400, text=problem)
        kind = self._plain_kind(data)
        if self._verifier is not None and kind is not None:
            # All of a channel mention's traffic: its companion `message` event, acknowledged
            # here, and its `app_mention`, stored here before the ack, without bolt's
            # per-request context, client and middleware (~0.35 ms of CPU each), once signed.
            if not self._verifier.is_valid(
                body,
                request.headers.get("X-Slack-Request-Timestamp", ""),
                request.headers.get("X-Slack-Signature", ""),
            ):
                return web.json_response({"error": "invalid request"}, status=401)  # as bolt
            if kind == "mention":
                assert data is not None
                try:
                    await self.bot.mention(data, data["event"])
                except Exception:  # not stored: no ack, so Slack retries (as bolt answers)
                    log.exception("Slack: could not accept a mention")
                    return web.Response(status=500)
            return web.Response(status=200)
        try:
            bolt_request = await to_bolt_request(request)
            return await to_aiohttp_response(await self.bot.app.async_dispatch(bolt_request))
        except Exception as exc:  # bolt trusts the payload's shape; a broken one is the sender's
            log.warning("Slack: could not process a request (%s)", type(exc).__name__)
            return web.Response(status=400, text="malformed request")

    def _plain_kind(self, data: dict[str, Any] | None) -> str | None:
        """What the adapter answers itself: an Events API request carrying the `message`
        event beside an `app_mention` ("companion"), or an `app_mention` once signed in (the
        bot's ids known: "mention"); None: anything else, for bolt."""
        if data is None or data.get("type") != "event_callback":
            return None
        event = data.get("event") or {}
        if event.get("type") == "app_mention" and self.bot.ids is not None:
            return "mention"
        if translate.is_mention_companion(event, self._bot_user_id):
            return "companion"
        return None


async def _read(request: web.Request) -> tuple[str, dict[str, Any] | None, str | None]:
    """The body as text, parsed when it is JSON, and why it cannot be a Slack request (or
    None). Checked before bolt sees it: bolt assumes UTF-8 text and, for JSON, an object whose
    `event` is an object."""
    try:
        body = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        return "", None, "the body is not UTF-8"
    if request.content_type != "application/json":
        return body, None, None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body, None, "the body is not JSON"
    if not isinstance(data, dict):
        return body, None, "the body is not a JSON object"
    if not isinstance(data.get("event", {}), dict):
        return body, None, "the event is not an object"
    return body, data, None


def _refusal(variable: str, exc: SlackApiError, needs: str = "") -> str:
    """Start-up's message: a refused token names its variable; a non-JSON answer (a proxy's
    error page) says so, as the token may well be fine."""
    code, status = error_of(exc)
    if not code:
        return (
            f"Slack's Web API answered HTTP {status} without Slack's JSON while checking "
            f"{variable}: a proxy or an outage? Check SLACK_API_URL and try again."
        )
    return f"Slack rejected {variable} ({code})" + (f": {needs}" if needs else "")

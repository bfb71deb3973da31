"""A stand-in Slack on loopback: the Web API methods tokbot calls (native streaming and the
assistant methods included), shared-file downloads, upload URLs, `response_url`s, and Socket Mode
(`apps.connections.open` and its WebSocket).

It answers in Slack's shapes (`{"ok": true, ...}`, `{"ok": false, "error": "..."}`), records every
call, keeps the messages as a person would see them (text after every `chat.update`), and can send
signed Events API requests and slash commands to an app, or envelopes over Socket Mode.

    python -m adapters.slack.fake --port 8098     # prints the env vars to point tokbot at it
    python -m adapters.slack.fake --port 8098 --app-url http://127.0.0.1:3000/slack/events
        # ... and sends each line typed as a signed slash command (`/ask hi`) or a mention
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from adapters.web import LISTEN_BACKLOG

LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Slack</title></head>"
    b"<body><h1>Sign in to your workspace</h1></body></html>"
)
#: What Envoy (a common proxy in front of APIs) answers when its upstream can't be reached.
PROXY_ERROR = (
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
)
#: What auth.test reports in `x-oauth-scopes` (as granted by manifest.yml).
SCOPES = (
    "app_mentions:read",
    "channels:history",
    "groups:history",
    "mpim:history",
    "im:history",
    "chat:write",
    "chat:write.public",
    "channels:join",
    "commands",
    "files:read",
    "files:write",
    "users:read",
    "im:write",
    "assistant:write",
)
MAX_TEXT = 40_000  # Slack refuses longer message text with msg_too_long
#: chat.startStream/appendStream/stopStream: "Limit this field [markdown_text] to 12,000
#: characters" (docs.slack.dev/reference/methods/chat.appendStream). What Slack answers past it is
#: not documented; msg_too_long here, as for chat.postMessage.
MAX_MARKDOWN = 12_000
#: assistant.threads.setStatus: "Maximum of 10 messages" in loading_messages.
MAX_LOADING_MESSAGES = 10
STREAMING_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream")


@dataclass
class Call:
    """One Web API call: the method and its arguments (query, form and JSON merged)."""

    method: str
    args: dict[str, Any]
    authorized: bool
    time: float = field(default_factory=time.monotonic)


@dataclass
class Message:
    """A message the app posted, as people see it now (`text` follows every chat.update)."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None = None
    edits: list[str] = field(default_factory=list)
    #: Streamed natively (chat.startStream): `text` is the Markdown Slack renders.
    markdown: bool = False
    #: Still streaming (between chat.startStream and chat.stopStream).
    streaming: bool = False
    #: The `markdown_text` of each start/append/stop call, in order.
    appends: list[str] = field(default_factory=list)
    #: Block Kit blocks (chat.postMessage/update, or those stopStream puts under the text).
    blocks: list[dict[str, Any]] | None = None


@dataclass
class AssistantThread:
    """What the app set on an assistant thread (assistant.threads.*)."""

    status: str = ""
    statuses: list[str] = field(default_factory=list)  # every status set, "" for a clear
    title: str | None = None
    prompts: list[dict[str, str]] = field(default_factory=list)
    prompts_title: str | None = None


@dataclass
class Ephemeral:
    """A message only `user` sees: chat.postEphemeral, or an ephemeral response to a command's
    response_url (`via`: "api" or "response_url")."""

    channel: str
    user: str
    text: str
    via: str
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] | None = None


@dataclass
class Upload:
    """A file shared with files.completeUploadExternal."""

    file_id: str
    filename: str
    title: str | None
    data: bytes
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None


@dataclass
class SlackUser:
    id: str
    name: str
    is_admin: bool = False
    is_owner: bool = False
    is_bot: bool = False


class FakeSlack:
    """See the module docstring. Start it, point `SLACK_API_URL` at `api_url`."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-fake-bot-token",
        app_token: str = "xapp-fake-app-token",
        signing_secret: str = "fake-signing-secret",
        team_id: str = "T0FAKE",
        bot_user_id: str = "U0TOKBOT",
        bot_id: str = "B0TOKBOT",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.calls: list[Call] = []
        self.messages: list[Message] = []
        #: People's messages, as `message_event` made them (conversations.replies reads them).
        self.people_messages: list[dict[str, Any]] = []
        self._rate_limited: dict[str, list[int]] = {}  # method -> [calls left, Retry-After]
        self._delays: dict[str, float] = {}  # method -> seconds before it answers
        #: method -> [calls left, status, body, content type]: answers that aren't Slack's.
        self._raw_failures: dict[str, list[Any]] = {}
        #: chat.update calls allowed per window (seconds), as Slack's Tier 3 ("50+ per minute"
        #: per workspace, docs.slack.dev/reference/methods/chat.update); past it, 429 with
        #: Retry-After. None: no limit (loads beyond one workspace's, on purpose).
        self.update_limit: tuple[int, float] | None = (50, 60.0)
        self._updates: collections.deque[float] = collections.deque()
        self.update_refusals = 0  # chat.update calls answered 429 by that limit
        #: chat.appendStream calls allowed per window: Tier 4, "100+ per minute" per workspace
        #: (docs.slack.dev/reference/methods/chat.appendStream); None: no limit.
        self.append_limit: tuple[int, float] | None = (100, 60.0)
        self._appends: collections.deque[float] = collections.deque()
        self.append_refusals = 0
        #: Set by `refuse_streaming`: how chat.*Stream calls are refused (error code, HTTP status).
        self._stream_refusal: tuple[str, int] | None = None
        #: Assistant threads by (channel, thread_ts).
        self.threads: dict[tuple[str, str], AssistantThread] = {}
        self.uploads: list[Upload] = []
        self.responses: list[dict[str, Any]] = []  # bodies posted to response_urls
        #: Private messages, apart from `messages` (which everyone in a channel sees).
        self.ephemeral: list[Ephemeral] = []
        self._commands: dict[str, tuple[str, str, int]] = {}  # response_url n: user, channel, uses
        self.acks: dict[str, dict[str, Any]] = {}  # Socket Mode envelope id -> ack
        self.users: dict[str, SlackUser] = {}
        self.dm_opened: list[str] = []  # users conversations.open was called for
        self.echo = False  # print the app's messages as they change (manual use)
        self.not_in_channel: set[str] = set()  # the bot is not a member of these
        self.public_only: set[str] = set()  # not a member, but chat:write.public lets it post
        self._files: dict[str, tuple[dict[str, Any], bytes]] = {}
        #: A refused download redirects to the sign-in page (else serves it at once).
        self.login_redirects = True
        self._pending_uploads: dict[str, tuple[str, bytes | None]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self.connects = 0  # Socket Mode connections ever accepted
        self._socket_ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self.app = self._build_app()

    # ---- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=LISTEN_BACKLOG)
        await site.start()
        self._url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self._url

    async def stop(self) -> None:
        for socket in list(self._sockets):
            # (a close waits for the peer's close frame, 10 s by default: bounded, as the
            # Discord fake's)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(socket.close(), 1.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FakeSlack is not started")
        return self._url

    @property
    def api_url(self) -> str:
        """The value for SLACK_API_URL."""
        return self.url + "/api/"

    # ---- state a test sets up

    def add_user(
        self, user_id: str, name: str, *, is_admin: bool = False, is_owner: bool = False
    ) -> None:
        self.users[user_id] = SlackUser(user_id, name, is_admin=is_admin, is_owner=is_owner)

    def add_file(
        self, name: str, data: bytes, mimetype: str, *, subtype: str | None = None
    ) -> dict[str, Any]:
        """Host a shared file; returns its Slack file object (as found in `event.files`)."""
        file_id = f"F{next(self._ids):08d}"
        download = f"{self.url}/files-pri/{self.team_id}-{file_id}/download/{name}"
        obj: dict[str, Any] = {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rpartition(".")[2],
            "size": len(data),
            "url_private": download.replace("/download/", "/"),
            "url_private_download": download,
        }
        if subtype is not None:
            obj["subtype"] = subtype
        self._files[file_id] = (obj, data)
        return obj

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` as Slack does past its rate limit: HTTP 429,
        `Retry-After` (seconds), `{"ok": false, "error": "ratelimited"}`."""
        self._rate_limited[method] = [times, retry_after]

    def fail_raw(
        self,
        method: str,
        *,
        status: int = 503,
        body: str = PROXY_ERROR,
        content_type: str = "text/plain",
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` as a proxy in front of Slack does when it
        can't reach it: an error status and a body that isn't Slack's JSON (by default Envoy's
        plain-text 503, which slack_sdk keeps as a `str`)."""
        self._raw_failures[method] = [times, status, body, content_type]

    def refuse_streaming(self, error: str | None = "unknown_method", status: int = 200) -> None:
        """Refuse chat.startStream/appendStream/stopStream as a workspace (or an older
        Slack-compatible server) without them: `{"ok": false, "error": error}` with HTTP
        `status` (a 404 with no JSON when `error` is None). `refuse_streaming(None, 0)` stops."""
        self._stream_refusal = None if status == 0 else (error or "", status)

    def delay(self, method: str, seconds: float) -> None:
        """Answer every call of `method` after `seconds` (0: at once again): Web API latency,
        which Slack does not bound (its docs only ask apps not to wait on it before the ack)."""
        self._delays[method] = seconds

    # ---- what a test reads

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def texts(self, channel: str | None = None, thread_ts: str | None = None) -> list[str]:
        """The visible text of every app message (in `channel` / `thread_ts`), oldest first."""
        return [
            m.text
            for m in self.messages
            if (channel is None or m.channel == channel)
            and (thread_ts is None or m.thread_ts == thread_ts)
        ]

    def thread(self, channel: str, thread_ts: str) -> AssistantThread:
        """What the app set on an assistant thread (made empty on first use)."""
        return self.threads.setdefault((channel, thread_ts), AssistantThread())

    def private_texts(self, user: str | None = None) -> list[str]:
        """What was shown only to `user` (or to anyone privately), oldest first."""
        return [e.text for e in self.ephemeral if user is None or e.user == user]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `condition()` holds (checked after every recorded change)."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the fake Slack never saw the expected state")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))

    # ---- signed HTTP requests to an app (Events API, slash commands)

    def sign(
        self, body: str, timestamp: int | None = None, secret: str | None = None
    ) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        verifier = SignatureVerifier(secret if secret is not None else self.signing_secret)
        signature = verifier.generate_signature(timestamp=stamp, body=body)
        return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature or ""}

    def command_payload(
        self,
        command: str,
        text: str = "",
        *,
        user_id: str = "U0ALICE",
        user_name: str = "alice",
        channel_id: str = "C0GENERAL",
    ) -> dict[str, str]:
        n = next(self._ids)
        self._commands[str(n)] = (user_id, channel_id, 0)
        return {
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "team_domain": "fake",
            "channel_id": channel_id,
            "channel_name": "general",
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": "A0TOKBOT",
            "is_enterprise_install": "false",
            "response_url": f"{self.url}/commands/{self.team_id}/{n}",
            "trigger_id": f"{n}.{self.team_id}.trigger",
        }

    def event_body(self, event: Mapping[str, Any], event_id: str | None = None) -> dict[str, Any]:
        return {
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "api_app_id": "A0TOKBOT",
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }

    def message_event(
        self,
        text: str,
        *,
        user: str = "U0ALICE",
        channel: str = "C0GENERAL",
        thread_ts: str | None = None,
        mention: bool = False,
        files: list[dict[str, Any]] | None = None,
        channel_type: str = "channel",
    ) -> dict[str, Any]:
        """A message (or, with `mention=True`, an app_mention) as Slack delivers it."""
        ts = f"{int(time.time())}.{next(self._ids):06d}"
        event: dict[str, Any] = {
            "type": "app_mention" if mention else "message",
            "user": user,
            "text": f"<@{self.bot_user_id}> {text}" if mention else text,
            "ts": ts,
            "channel": channel,
            "event_ts": ts,
            "team": self.team_id,
        }
        if not mention:
            event["channel_type"] = channel_type
        if thread_ts is not None:
            event["thread_ts"] = thread_ts
        if files:
            event["files"] = files
            event["upload"] = False
            if not mention:
                event["subtype"] = "file_share"
        kept = {k: v for k, v in event.items() if k not in ("channel_type", "event_ts")}
        self.people_messages.append(kept | {"type": "message"})
        return event

    def message_changed_event(self, original: dict[str, Any], text: str) -> dict[str, Any]:
        """A person's edit of `original` (a `message_event`), in the shape of Slack's
        message_changed subtype (docs.slack.dev/reference/events/message/message_changed):
        hidden, the edited message under `message`, the old one under `previous_message`."""
        ts = f"{int(time.time())}.{next(self._ids):06d}"
        edited = {k: v for k, v in original.items() if k not in ("channel_type", "event_ts")}
        edited |= {"type": "message", "text": text, "edited": {"user": original["user"], "ts": ts}}
        return {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": original["channel"],
            "ts": ts,
            "event_ts": ts,
            "message": edited,
            "previous_message": {k: v for k, v in original.items() if k != "event_ts"},
        }

    def message_deleted_event(self, original: dict[str, Any]) -> dict[str, Any]:
        """The deletion of `original`, in the shape of Slack's message_deleted subtype
        (docs.slack.dev/reference/events/message/message_deleted): `deleted_ts` names it."""
        ts = f"{int(time.time())}.{next(self._ids):06d}"
        return {
            "type": "message",
            "subtype": "message_deleted",
            "hidden": True,
            "channel": original["channel"],
            "ts": ts,
            "event_ts": ts,
            "deleted_ts": original["ts"],
            "previous_message": {k: v for k, v in original.items() if k != "event_ts"},
        }

    def assistant_event(
        self,
        kind: str = "assistant_thread_started",
        *,
        user: str = "U0ALICE",
        channel: str = "D0ALICE",
        thread_ts: str | None = None,
        viewing: str | None = None,
    ) -> dict[str, Any]:
        """`assistant_thread_started` (the pane opened a thread) or
        `assistant_thread_context_changed` (the person views another channel), as in
        docs.slack.dev/reference/events/assistant_thread_started."""
        ts = thread_ts or f"{int(time.time())}.{next(self._ids):06d}"
        context: dict[str, Any] = {}
        if viewing is not None:
            context = {"channel_id": viewing, "team_id": self.team_id, "enterprise_id": None}
        return {
            "type": kind,
            "assistant_thread": {
                "user_id": user,
                "context": context,
                "channel_id": channel,
                "thread_ts": ts,
            },
            "event_ts": f"{int(time.time())}.{next(self._ids):06d}",
        }

    def block_action(
        self,
        action_id: str,
        value: str,
        *,
        user: str = "U0ALICE",
        message: Message | Ephemeral | None = None,
        channel: str = "C0GENERAL",
        action_type: str = "button",
    ) -> dict[str, Any]:
        """A `block_actions` payload for a click on a button of `message` (a message the app
        posted, or an ephemeral one it showed `user`), with a response_url this fake serves.
        Shape from docs.slack.dev/reference/interaction-payloads/block_actions-payload: `user`,
        `container` (message_ts / channel_id / is_ephemeral / thread_ts), `channel`, `message`
        (not for ephemeral ones), `response_url`, `actions` [{action_id, value, type, …}]."""
        n = next(self._ids)
        where = message.channel if message is not None else channel
        self._commands[str(n)] = (user, where, 0)
        ephemeral = isinstance(message, Ephemeral)
        ts = message.ts if isinstance(message, Message) else f"{1_700_000_000 + n}.{n:06d}"
        thread = message.thread_ts if message is not None else None
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(),
                     "team_id": self.team_id},
            "api_app_id": "A0TOKBOT",
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": ts, "channel_id": where,
                          "is_ephemeral": ephemeral, **({"thread_ts": thread} if thread else {})},
            "trigger_id": f"{n}.{self.team_id}.trigger",
            "team": {"id": self.team_id, "domain": "fake"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": where, "name": "general"},
            "state": {"values": {}},
            "response_url": f"{self.url}/commands/{self.team_id}/{n}",
            "actions": [{"action_id": action_id, "block_id": f"b{n}", "value": value,
                         "type": action_type, "action_ts": f"{int(time.time())}.{n:06d}"}],
        }  # fmt: skip
        if isinstance(message, Message):
            payload["message"] = {"type": "message", "user": self.bot_user_id, "ts": ts,
                                  "text": message.text, "blocks": message.blocks or []}  # fmt: skip
        return payload

    async def post_action(
        self, app_url: str, payload: Mapping[str, Any], **sign: Any
    ) -> tuple[int, str]:
        """Send an interaction as Slack does: form-encoded `payload=<JSON>`, signed."""
        body = urlencode({"payload": json.dumps(payload)})
        headers = {"Content-Type": "application/x-www-form-urlencoded", **self.sign(body, **sign)}
        return await _post(app_url, body, headers)

    async def post_command(
        self, app_url: str, payload: Mapping[str, str], **sign: Any
    ) -> tuple[int, str]:
        body = urlencode(payload)
        headers = {"Content-Type": "application/x-www-form-urlencoded", **self.sign(body, **sign)}
        return await _post(app_url, body, headers)

    async def post_event(
        self,
        app_url: str,
        body: Mapping[str, Any],
        *,
        retry_num: int | None = None,
        **sign: Any,
    ) -> tuple[int, str]:
        text = json.dumps(body)
        headers = {"Content-Type": "application/json", **self.sign(text, **sign)}
        if retry_num is not None:
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "timeout"}
        return await _post(app_url, text, headers)

    # ---- Socket Mode

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._socket_ready.wait(), timeout)

    async def send_envelope(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        retry_attempt: int = 0,
        connection: int = -1,
    ) -> str:
        """Send an envelope (`events_api`, `slash_commands`) to the app over one of its open
        connections (the newest unless `connection` says which: Slack hands each envelope to
        one of an app's connections, a retry maybe to another); return its id."""
        if not self._sockets:
            raise RuntimeError("no Socket Mode connection")
        envelope_id = f"env-{next(self._ids)}"
        await self._sockets[connection].send_json(
            {
                "envelope_id": envelope_id,
                "payload": dict(payload),
                "type": kind,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": retry_attempt,
                "retry_reason": "timeout" if retry_attempt else "",
            }
        )
        return envelope_id

    async def ask_to_reconnect(self) -> None:
        """Send Slack's `disconnect` message (as before it rotates a connection)."""
        if self._sockets:
            await self._sockets[-1].send_json(
                {
                    "type": "disconnect",
                    "reason": "refresh_requested",
                    "debug_info": {"host": "fake"},
                }
            )

    @property
    def connections(self) -> int:
        """Socket Mode connections open now."""
        return len(self._sockets)

    # ---- the server

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._download)
        app.router.add_get("/files-pri/{team_file}/{name}", self._download)
        app.router.add_get("/", _login_page)
        app.router.add_post("/commands/{team}/{n}", self._response_url)
        app.router.add_get("/link/", self._socket)
        return app

    def _show(self, what: str, message: Message) -> None:
        if self.echo:
            where = message.channel + (f" thread {message.thread_ts}" if message.thread_ts else "")
            print(f"[{where}] {what} {message.ts}: {message.text}", flush=True)

    def _changed_now(self) -> None:
        self._changed.set()

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                args |= body
        elif request.can_read_body:
            args |= {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        token = token or str(args.pop("token", ""))
        args.pop("token", None)
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        call = Call(method, args, authorized=token == wanted)
        self.calls.append(call)
        self._changed_now()
        if not token:
            return _error("not_authed")
        if not call.authorized:
            return _error("invalid_auth")
        raw = self._raw_failures.get(method)
        if raw:
            raw[0] -= 1
            if raw[0] <= 0:
                del self._raw_failures[method]
            return web.Response(status=raw[1], text=raw[2], content_type=raw[3])
        limited = self._rate_limited.get(method)
        if limited:
            limited[0] -= 1
            if limited[0] <= 0:
                del self._rate_limited[method]
            response = _error("ratelimited")
            response.set_status(429)
            response.headers["Retry-After"] = str(limited[1])
            return response
        if (
            method == "chat.appendStream"
            and (wait := _window_wait(self._appends, self.append_limit)) is not None
        ):
            self.append_refusals += 1
            response = _error("ratelimited")
            response.set_status(429)
            response.headers["Retry-After"] = str(wait)
            return response
        if method == "chat.update" and (wait := self._update_wait()) is not None:
            self.update_refusals += 1
            response = _error("ratelimited")
            response.set_status(429)
            response.headers["Retry-After"] = str(wait)
            return response
        if method in STREAMING_METHODS and self._stream_refusal is not None:
            error, status = self._stream_refusal
            if not error:
                return web.Response(status=status, text="404 page not found")
            response = _error(error)
            response.set_status(status)
            return response
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return _error("unknown_method")
        if self._delays.get(method):
            await asyncio.sleep(self._delays[method])
        result: web.Response = await handler(request, args)
        self._changed_now()
        return result

    def _update_wait(self) -> int | None:
        """Whole seconds until one more chat.update is allowed (None: now; counted)."""
        return _window_wait(self._updates, self.update_limit)

    async def _m_auth_test(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        response = _ok(
            url="https://fake.slack.com/",
            team="Fake",
            user="tokbot",
            team_id=self.team_id,
            user_id=self.bot_user_id,
            bot_id=self.bot_id,
            is_enterprise_install=False,
        )
        response.headers["x-oauth-scopes"] = ",".join(SCOPES)
        return response

    async def _m_chat_postMessage(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        channel, text = str(args.get("channel") or ""), str(args.get("text") or "")
        if not channel:
            return _error("channel_not_found")
        if channel in self.not_in_channel and channel not in self.public_only:
            return _error("not_in_channel")
        if not text:
            return _error("no_text")
        if len(text) > MAX_TEXT:
            return _error("msg_too_long")
        blocks = _blocks(args.get("blocks"))
        # `markdown` blocks: standard Markdown Slack renders, at most 12,000 characters in all
        # (docs.slack.dev/reference/block-kit/blocks/markdown-block); then that is the text
        # people see, and `text` only the notification's fallback.
        markdown = "".join(
            str(b.get("text") or "") for b in blocks or () if b.get("type") == "markdown"
        )
        if len(markdown) > MAX_MARKDOWN:
            return _error("invalid_blocks")
        n = next(self._ids)
        ts = f"{1_700_000_000 + n}.{n:06d}"
        thread = args.get("thread_ts") or None
        self.messages.append(
            Message(channel, ts, markdown or text, str(thread) if thread else None)
        )
        self.messages[-1].markdown = bool(markdown)
        self.messages[-1].blocks = blocks
        self._replied(channel, thread)
        self._show("posted", self.messages[-1])
        message = {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id, "ts": ts}
        return _ok(channel=channel, ts=ts, message=message | {"text": text})

    async def _m_chat_postEphemeral(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        """Errors as documented for chat.postEphemeral (docs.slack.dev/reference/methods/
        chat.postEphemeral): the recipient must be a member (here: a known user)."""
        channel, user = str(args.get("channel") or ""), str(args.get("user") or "")
        text = str(args.get("text") or "")
        if not channel:
            return _error("channel_not_found")
        if channel in self.not_in_channel and channel not in self.public_only:
            return _error("not_in_channel")
        if user not in self.users:
            return _error("user_not_in_channel")
        if not text:
            return _error("no_text")
        if len(text) > MAX_TEXT:
            return _error("msg_too_long")
        thread = args.get("thread_ts") or None
        self.ephemeral.append(
            Ephemeral(
                channel, user, text, "api", str(thread) if thread else None,
                _blocks(args.get("blocks")),
            )
        )  # fmt: skip
        if self.echo:
            print(f"[{channel}] only for {user}: {text}", flush=True)
        n = next(self._ids)
        return _ok(message_ts=f"{1_700_000_000 + n}.{n:06d}")

    async def _m_chat_update(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        channel, ts, text = (str(args.get(k) or "") for k in ("channel", "ts", "text"))
        target = next((m for m in self.messages if m.channel == channel and m.ts == ts), None)
        if target is None:
            return _error("message_not_found")
        if len(text) > MAX_TEXT:
            return _error("msg_too_long")
        target.edits.append(text)
        target.text = text
        target.markdown = False
        if "blocks" in args:
            target.blocks = _blocks(args.get("blocks"))
        self._show("updated", target)
        return _ok(channel=channel, ts=ts, text=text)

    # Native streaming. Arguments and error codes from docs.slack.dev/reference/methods/
    # chat.startStream, chat.appendStream and chat.stopStream: startStream needs `channel` and
    # `thread_ts` ("streamed messages should always be replies"), and outside DMs
    # `recipient_user_id` / `recipient_team_id` (missing_recipient_user_id / _team_id);
    # appendStream needs `markdown_text` (no_text); a message not streaming any more answers
    # message_not_in_streaming_state; only stopStream takes `blocks`. The response is
    # {"ok": true, "channel", "ts"} (stopStream adds the final `message`).

    async def _m_chat_startStream(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        channel, thread = str(args.get("channel") or ""), str(args.get("thread_ts") or "")
        markdown = str(args.get("markdown_text") or "")
        if not channel:
            return _error("channel_not_found")
        if channel in self.not_in_channel and channel not in self.public_only:
            return _error("not_in_channel")
        if not thread:
            return _error("invalid_arguments")
        if not channel.startswith("D"):
            if not args.get("recipient_user_id"):
                return _error("missing_recipient_user_id")
            if not args.get("recipient_team_id"):
                return _error("missing_recipient_team_id")
        if len(markdown) > MAX_MARKDOWN:
            return _error("msg_too_long")
        n = next(self._ids)
        ts = f"{1_700_000_000 + n}.{n:06d}"
        message = Message(channel, ts, markdown, thread, markdown=True, streaming=True)
        message.appends.append(markdown)
        self.messages.append(message)
        self._replied(channel, thread)
        self._show("streaming", message)
        return _ok(channel=channel, ts=ts)

    async def _m_chat_appendStream(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        target, refusal = self._streaming_message(args)
        if target is None:
            return refusal
        markdown = str(args.get("markdown_text") or "")
        if not markdown:
            return _error("no_text")
        if len(markdown) > MAX_MARKDOWN:
            return _error("msg_too_long")
        target.appends.append(markdown)
        target.text += markdown
        self._show("appended", target)
        return _ok(channel=target.channel, ts=target.ts)

    async def _m_chat_stopStream(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        target, refusal = self._streaming_message(args)
        if target is None:
            return refusal
        markdown = str(args.get("markdown_text") or "")
        if len(markdown) > MAX_MARKDOWN:
            return _error("msg_too_long")
        if markdown:
            target.appends.append(markdown)
            target.text += markdown
        target.blocks = _blocks(args.get("blocks"))
        target.streaming = False
        self._show("stopped", target)
        message = {"type": "message", "subtype": "bot_message", "bot_id": self.bot_id,
                   "ts": target.ts, "text": target.text}  # fmt: skip
        return _ok(channel=target.channel, ts=target.ts, message=message)

    def _streaming_message(self, args: dict[str, Any]) -> tuple[Message | None, web.Response]:
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        if not channel:
            return None, _error("channel_not_found")
        target = next((m for m in self.messages if m.channel == channel and m.ts == ts), None)
        if target is None:
            return None, _error("message_not_found")
        if not target.streaming:
            return None, _error("message_not_in_streaming_state")
        return target, _error("")

    # The assistant pane. Arguments and errors from docs.slack.dev/reference/methods/
    # assistant.threads.setStatus (channel_id, thread_ts, status; "" clears it; up to 10
    # loading_messages; "automatically cleared when the app sends a reply"),
    # assistant.threads.setSuggestedPrompts (prompts: [{title, message}], optional title) and
    # assistant.threads.setTitle; errors channel_not_found / invalid_thread_ts.

    async def _m_assistant_threads_setStatus(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        thread, refusal = self._assistant_thread(args)
        if thread is None:
            return refusal
        status = args.get("status")
        loading = args.get("loading_messages")
        if not isinstance(status, str):
            return _error("invalid_arguments")
        if isinstance(loading, str):
            loading = json.loads(loading)
        if loading is not None and (
            not isinstance(loading, list) or len(loading) > MAX_LOADING_MESSAGES
        ):
            return _error("invalid_arguments")
        thread.status = status
        thread.statuses.append(status)
        return _ok()

    async def _m_assistant_threads_setSuggestedPrompts(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        thread, refusal = self._assistant_thread(args)
        if thread is None:
            return refusal
        prompts = args.get("prompts")
        if isinstance(prompts, str):
            prompts = json.loads(prompts)
        if (
            not isinstance(prompts, list)
            or not prompts
            or not all(isinstance(p, dict) and p.get("title") and p.get("message") for p in prompts)
        ):
            return _error("invalid_arguments")
        thread.prompts = prompts
        thread.prompts_title = args.get("title")
        return _ok()

    async def _m_assistant_threads_setTitle(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        thread, refusal = self._assistant_thread(args)
        if thread is None:
            return refusal
        title = str(args.get("title") or "")
        if not title:
            return _error("invalid_arguments")
        thread.title = title
        return _ok()

    def _assistant_thread(
        self, args: dict[str, Any]
    ) -> tuple[AssistantThread | None, web.Response]:
        channel, ts = str(args.get("channel_id") or ""), str(args.get("thread_ts") or "")
        if not channel:
            return None, _error("channel_not_found")
        if not ts:
            return None, _error("invalid_thread_ts")
        return self.thread(channel, ts), _error("")

    def _replied(self, channel: str, thread_ts: Any) -> None:
        """A reply in a thread clears its status, as Slack does."""
        thread = self.threads.get((channel, str(thread_ts))) if thread_ts else None
        if thread is not None and thread.status:
            thread.status = ""
            thread.statuses.append("")

    async def _m_conversations_join(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        channel = str(args.get("channel") or "")
        if not channel.startswith("C"):
            return _error("method_not_supported_for_channel_type")
        self.not_in_channel.discard(channel)
        self.public_only.discard(channel)
        return _ok(channel={"id": channel, "is_channel": True, "is_member": True})

    async def _m_conversations_replies(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        """A thread, parent first, then its replies by time (people's and the app's), paged
        with `limit` and `cursor`; `latest`/`oldest` bound the replies (`inclusive` keeps
        the bounds), as Slack documents."""
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        if not channel or not ts:
            return _error("invalid_arguments")
        if channel in self.not_in_channel:
            return _error("not_in_channel")
        in_channel = [m for m in self.people_messages if m.get("channel") == channel] + [
            {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id, "text": m.text,
             "ts": m.ts, **({"thread_ts": m.thread_ts} if m.thread_ts else {})}
            for m in self.messages if m.channel == channel
        ]  # fmt: skip
        parent = next((m for m in in_channel if m["ts"] == ts), None)
        if parent is None:
            return _error("thread_not_found")
        replies = sorted(
            (m for m in in_channel if m.get("thread_ts") == ts and m["ts"] != ts),
            key=lambda m: float(m["ts"]),
        )
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        latest, oldest = args.get("latest"), args.get("oldest")
        if latest:
            limit_ts = float(latest)
            replies = [m for m in replies if float(m["ts"]) < limit_ts or
                       (inclusive and float(m["ts"]) == limit_ts)]  # fmt: skip
        if oldest:
            floor_ts = float(oldest)
            replies = [m for m in replies if float(m["ts"]) > floor_ts or
                       (inclusive and float(m["ts"]) == floor_ts)]  # fmt: skip
        thread = [parent, *replies]
        try:
            start = int(str(args.get("cursor") or "0"))
            limit = max(1, min(1000, int(args.get("limit") or 1000)))
        except ValueError:
            return _error("invalid_cursor")
        page, rest = thread[start : start + limit], thread[start + limit :]
        return _ok(
            messages=page,
            has_more=bool(rest),
            response_metadata={"next_cursor": str(start + limit) if rest else ""},
        )

    async def _m_conversations_open(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        """A DM with one user (`users`, comma-separated ids): its channel id, the same one every
        time, as docs.slack.dev/reference/methods/conversations.open describes (errors
        users_list_not_supplied, user_not_found; needs im:write). Group DMs are not served."""
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if not users and not args.get("channel"):
            return _error("users_list_not_supplied")
        if len(users) != 1 or users[0] not in self.users:
            return _error("user_not_found")
        self.dm_opened.append(users[0])
        return _ok(channel={"id": "D" + users[0].removeprefix("U")})

    def direct_messages(self, user: str) -> list[str]:
        """Texts posted in the DM with `user` (opened with conversations.open)."""
        return self.texts("D" + user.removeprefix("U"))

    async def _m_users_info(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        user = self.users.get(str(args.get("user") or ""))
        if user is None:
            return _error("user_not_found")
        return _ok(
            user={
                "id": user.id,
                "team_id": self.team_id,
                "name": user.name.lower(),
                "real_name": user.name,
                "is_admin": user.is_admin,
                "is_owner": user.is_owner,
                "is_bot": user.is_bot,
                "profile": {"display_name": user.name, "real_name": user.name},
            }
        )

    async def _m_files_getUploadURLExternal(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        filename, length = str(args.get("filename") or ""), str(args.get("length") or "")
        if not filename or not length.isdigit():
            return _error("invalid_arguments")
        file_id = f"F{next(self._ids):08d}"
        self._pending_uploads[file_id] = (filename, None)
        return _ok(upload_url=f"{self.url}/upload/{file_id}", file_id=file_id)

    async def _m_files_completeUploadExternal(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        files = args.get("files")
        items = json.loads(files) if isinstance(files, str) else files
        if args.get("channel_id") in self.not_in_channel:
            return _error("not_in_channel")
        if not isinstance(items, list) or not items:
            return _error("invalid_arguments")
        done = []
        for item in items:
            pending = self._pending_uploads.pop(str(item.get("id")), None)
            filename, data = pending if pending is not None else ("", None)
            if data is None:
                return _error("file_not_found")
            self.uploads.append(
                Upload(
                    file_id=str(item["id"]),
                    filename=filename,
                    title=item.get("title"),
                    data=data,
                    channel=args.get("channel_id"),
                    thread_ts=args.get("thread_ts"),
                    initial_comment=args.get("initial_comment"),
                )
            )
            done.append(
                {"id": item["id"], "title": item.get("title") or filename, "name": filename}
            )
        return _ok(files=done)

    async def _m_apps_connections_open(
        self, request: web.Request, args: dict[str, Any]
    ) -> web.Response:
        ws_url = self.url.replace("http://", "ws://", 1)
        return _ok(url=f"{ws_url}/link/?ticket=t-{next(self._ids)}&app_id=A0TOKBOT")

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        pending = self._pending_uploads.get(file_id)
        if pending is None:
            return web.Response(status=404, text="not found")
        data = await request.read()
        self._pending_uploads[file_id] = (pending[0], data)
        return web.Response(text=f"OK - {len(data)}")

    async def _download(self, request: web.Request) -> web.Response:
        file_id = request.match_info["team_file"].rpartition("-")[2]
        self.calls.append(
            Call(
                "download",
                {"file": file_id},
                request.headers.get("Authorization") == f"Bearer {self.bot_token}",
            )
        )
        self._changed_now()
        if not self.calls[-1].authorized or file_id not in self._files:
            # What Slack does: no error status, a sign-in page, reached by a redirect to the
            # workspace's `/?redir=` (the 302 body quoted in slackapi/deno-slack-sdk#285), or
            # (as others report, e.g. slack-go/slack#1284) served at once.
            if self.login_redirects:
                raise web.HTTPFound(f"/?redir={quote(request.path, safe='')}")
            return await _login_page(request)
        obj, data = self._files[file_id]
        return web.Response(body=data, content_type=str(obj["mimetype"]))

    async def _response_url(self, request: web.Request) -> web.Response:
        """A command's response_url: up to 5 responses within 30 minutes of the command
        (api.slack.com/interactivity/handling#message_responses; the body of the refusal past
        that is not documented, so 404 `used_url` here). Ephemeral unless `in_channel`."""
        n = request.match_info["n"]
        if n not in self._commands:
            return web.Response(status=404, text="invalid_url")
        user, channel, uses = self._commands[n]
        if uses >= 5:
            return web.Response(status=404, text="used_url")
        body = await request.json()
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return web.Response(status=400, text="no_text")
        self._commands[n] = (user, channel, uses + 1)
        self.responses.append(body)
        if body.get("response_type", "ephemeral") == "ephemeral":
            self.ephemeral.append(Ephemeral(channel, user, str(body.get("text")), "response_url"))
        self._changed_now()
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        self.connects += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {"host": "fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A0TOKBOT"},
            }
        )
        self._socket_ready.set()
        try:
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(frame.data)
                if isinstance(data, dict) and "envelope_id" in data:
                    self.acks[str(data["envelope_id"])] = data
                    self._changed_now()
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self._socket_ready.clear()
        return ws


def _window_wait(calls: collections.deque[float], limit: tuple[int, float] | None) -> int | None:
    """Whole seconds until one more call is allowed under `limit` (calls, window in seconds),
    or None: now (and it is counted in `calls`)."""
    if limit is None:
        return None
    allowed, window = limit
    now = time.monotonic()
    while calls and calls[0] <= now - window:
        calls.popleft()
    if len(calls) >= allowed:
        return max(1, math.ceil(calls[0] + window - now))
    calls.append(now)
    return None


def _blocks(value: Any) -> list[dict[str, Any]] | None:
    """Blocks as sent: a JSON list, or a string of one (form-encoded calls)."""
    if isinstance(value, str):
        value = json.loads(value) if value else None
    return value if isinstance(value, list) else None


def _ok(**fields: Any) -> web.Response:
    return web.json_response({"ok": True, **fields})


async def _login_page(request: web.Request) -> web.Response:
    return web.Response(body=LOGIN_PAGE, content_type="text/html")


def _error(code: str) -> web.Response:
    return web.json_response({"ok": False, "error": code})


async def _post(url: str, body: str, headers: Mapping[str, str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body.encode(), headers=dict(headers)) as response,
    ):
        return response.status, await response.text()


async def _serve(
    host: str, port: int, app_url: str | None, update_limit: bool, people: int = 0
) -> None:
    fake = FakeSlack()
    fake.echo = True
    if not update_limit:
        fake.update_limit = fake.append_limit = None
    fake.add_user("U0ALICE", "alice", is_admin=True)  # the person typing at the terminal
    for n in range(people):  # load tests: people users.info knows
        fake.add_user(person_id(n), f"person {n}")
    url = await fake.start(host, port)
    print(
        f"Fake Slack at {url}. Point tokbot at it:\n"
        f"  SLACK_API_URL={fake.api_url}\n  SLACK_BOT_TOKEN={fake.bot_token}\n"
        f"  SLACK_SIGNING_SECRET={fake.signing_secret}\n"
        f"  SLACK_APP_TOKEN={fake.app_token}   (only for Socket Mode)\nCtrl-C stops it.",
        flush=True,
    )
    try:
        if app_url is None:
            await asyncio.Event().wait()
        else:
            await _relay_stdin(fake, app_url)
    finally:
        await fake.stop()


async def _relay_stdin(fake: FakeSlack, app_url: str) -> None:
    """Send each stdin line to the app: `/command text` as a slash command, `!good` / `!bad` /
    `!stop` as a click on the newest answer's 👍 / 👎 / Stop button, anything else as a message
    that mentions the bot."""
    print(
        f"Type `/command text`, a message for the bot, or !good, !bad, !stop to click the newest "
        f"answer's buttons; each is sent to {app_url}. Ctrl-D quits.",
        flush=True,
    )
    # readline returns "" only at end of input (Ctrl-D); an empty line is "\n" and is skipped.
    while raw := await asyncio.to_thread(sys.stdin.readline):
        line = raw.strip()
        if not line:
            continue
        if line in ("!good", "!bad", "!stop"):
            click = _click_newest(fake, line[1:])
            if click is None:
                print("(no such button on screen)", flush=True)
                continue
            status, _ = await fake.post_action(app_url, click)
        elif line.startswith("/"):
            command, _, text = line.partition(" ")
            status, _ = await fake.post_command(app_url, fake.command_payload(command, text))
        else:
            event = fake.event_body(fake.message_event(line, mention=True))
            status, _ = await fake.post_event(app_url, event)
        print(f"(sent: HTTP {status})", flush=True)
    await asyncio.sleep(3.0)  # let the last answer arrive


def _click_newest(fake: FakeSlack, which: str) -> dict[str, Any] | None:
    """A click on the newest button of that kind: feedback under a message, Stop in a message
    or in a private Stop offer."""
    shown: list[Message | Ephemeral] = [*fake.messages, *fake.ephemeral]
    for message in reversed(shown):
        for block in message.blocks or ():
            for element in block.get("elements") or ():
                if which == "stop" and element.get("action_id") == "tokbot_stop":
                    return fake.block_action("tokbot_stop", element["value"], message=message)
                if which != "stop" and element.get("type") == "feedback_buttons":
                    button = element["positive_button" if which == "good" else "negative_button"]
                    return fake.block_action(
                        "tokbot_feedback", button["value"], message=message,
                        action_type="feedback_buttons",
                    )  # fmt: skip
    return None


def person_id(n: int) -> str:
    """The user id of the `n`th person `--people` adds."""
    return f"U0P{n:05d}"


def main() -> None:
    parser = argparse.ArgumentParser(description="A stand-in Slack Web API on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument(
        "--app-url",
        default=None,
        help="tokbot's /slack/events URL: then each line on stdin is sent to it, signed",
    )
    parser.add_argument(
        "--no-update-limit",
        action="store_true",
        help="don't enforce Slack's chat.update limit (50 a minute): for load tests",
    )
    parser.add_argument(
        "--people",
        type=int,
        default=0,
        help="also know this many people (ids from `person_id`): for load tests",
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _serve(args.host, args.port, args.app_url, not args.no_update_limit, args.people)
        )


if __name__ == "__main__":
    main()

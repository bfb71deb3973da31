"""A loopback stand-in for Discord: the gateway WebSocket and the REST API, as the real
discord.py talks to them.

The gateway says HELLO, acknowledges heartbeats, answers IDENTIFY with READY and GUILD_CREATE
(or closes with 4004 for a wrong token and 4014 when the message content intent is not granted),
and answers RESUME by replaying what the session missed, then RESUMED. The REST API serves
`GET /gateway/bot`, `users/@me`, `oauth2/applications/@me`, command sync, interaction callbacks,
webhook follow-ups and `@original` edits, channel messages (JSON or multipart with files) and CDN
downloads. Content over 2,000 characters is refused as Discord refuses it (400, 50035).
Every REST call is recorded (`calls`) and every message kept as a user would see it
(`messages`). Tests inject events with `dispatch`, `interaction` and `message`.

Run `python -m adapters.discord.fake --port 8098` for a manual try: lines typed into it reach
the bot (see `adapters/discord/fake_input.py`) and it prints what the bot sends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import BodyPartReader, WSMsgType, web

from adapters.web import LISTEN_BACKLOG

log = logging.getLogger("tokbot.discord.fake")

API_PREFIX: Final = "/api/v10"
HELLO, IDENTIFY, RESUME, HEARTBEAT, HEARTBEAT_ACK, DISPATCH = 10, 2, 6, 1, 11, 0
MESSAGE_CONTENT_INTENT: Final = 1 << 15
MANAGE_GUILD: Final = 1 << 5
VOICE_MESSAGE_FLAG: Final = 1 << 13
#: Message flags (Discord's docs, resources/message "Message Flags"): only the asker sees an
#: EPHEMERAL message; LOADING is a deferred response's "thinking…" state.
EPHEMERAL_FLAG: Final = 1 << 6
LOADING_FLAG: Final = 1 << 7
DEFAULT_SIZE_LIMIT: Final = 10 * 1024 * 1024
#: Seconds Discord waits for an interaction's first response (then: 10062 Unknown interaction).
INTERACTION_ACK_WINDOW: Final = 3.0
#: Seconds an interaction's token works for follow-ups and edits (then: 50027).
INTERACTION_TOKEN_LIFETIME: Final = 15 * 60.0
#: A message's `content` limit. Discord's API is Python and counts code points, as `len` does
#: (Discord staff in discord-api-docs issue #1315); more is refused with 50035 (see `_too_long`).
MAX_CONTENT_LENGTH: Final = 2000

JSONDict = dict[str, Any]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py only decodes a body whose Content-Type is exactly "application/json".
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def _too_long(body: Any) -> web.Response | None:
    """Discord's answer to an over-long `content`: 400, code 50035 "Invalid Form Body", with the
    offending field nested in `errors` (the "Example JSON Error Response" in Discord's docs,
    topics/opcodes-and-status-codes; discord.py's `HTTPException` flattens it into "In content:
    Must be 2000 or fewer in length."). An interaction callback nests it under `data`."""
    if not isinstance(body, dict):
        return None
    nested = body.get("data")
    where: list[str] = ["data", "content"] if isinstance(nested, dict) else ["content"]
    content = (nested if isinstance(nested, dict) else body).get("content")
    if not isinstance(content, str) or len(content) <= MAX_CONTENT_LENGTH:
        return None
    error: JSONDict = {
        "_errors": [
            {
                "code": "BASE_TYPE_MAX_LENGTH",
                "message": f"Must be {MAX_CONTENT_LENGTH} or fewer in length.",
            }
        ]
    }
    for key in reversed(where):
        error = {key: error}
    return _json({"message": "Invalid Form Body", "code": 50035, "errors": error}, 400)


#: Discord's limits on buttons (docs: components/reference, "Action Row" and "Button"): up to
#: 5 action rows of up to 5 buttons; a button has a style 1-5 (5: a link, with a `url` and no
#: custom_id; the others with a custom_id of 1-100 characters, unique in the message), and a
#: label of at most 80 characters or an emoji.
MAX_ACTION_ROWS: Final = 5
MAX_ROW_BUTTONS: Final = 5
MAX_CUSTOM_ID: Final = 100
MAX_BUTTON_LABEL: Final = 80


def _bad_components(body: Any) -> web.Response | None:
    """Discord's answer to components it does not take: 400, 50035 "Invalid Form Body", the
    offending field named in `errors` (`components.N.components.M.field`; under `data` in an
    interaction callback)."""
    if not isinstance(body, dict):
        return None
    nested = body.get("data") if isinstance(body.get("data"), dict) else None
    rows = (nested or body).get("components")
    if not rows:
        return None
    problem = _component_problem(rows)
    if problem is None:
        return None
    path, code = problem
    error: JSONDict = {"_errors": [{"code": code, "message": code.replace("_", " ").lower()}]}
    for key in reversed(["data", "components", *path] if nested else ["components", *path]):
        error = {key: error}
    return _json({"message": "Invalid Form Body", "code": 50035, "errors": error}, 400)


def _component_problem(rows: Any) -> tuple[list[str], str] | None:
    """Where `rows` break Discord's rules for buttons, and the error code (None: they don't)."""
    if not isinstance(rows, list) or len(rows) > MAX_ACTION_ROWS:
        return [], "BASE_TYPE_MAX_LENGTH"
    seen: set[str] = set()
    for r, row in enumerate(rows):
        items = row.get("components") if isinstance(row, dict) else None
        if row.get("type") != 1 or not isinstance(items, list) or not 1 <= len(items) <= 5:
            return [str(r)], "COMPONENT_LAYOUT_WIDTH_EXCEEDED"
        for i, item in enumerate(items):
            at = [str(r), "components", str(i)]
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(item, dict) or item.get("type") != 2:
                return at, "UNION_TYPE_CHOICES"
            if item.get("style") not in (1, 2, 3, 4, 5):
                return [*at, "style"], "BASE_TYPE_CHOICES"
            if (item.get("style") == 5) != (custom_id is None):
                return [*at, "custom_id"], "BUTTON_COMPONENT_CUSTOM_ID_REQUIRED"
            if custom_id is not None:
                if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= MAX_CUSTOM_ID:
                    return [*at, "custom_id"], "BASE_TYPE_BAD_LENGTH"
                if custom_id in seen:
                    return [*at, "custom_id"], "COMPONENT_CUSTOM_ID_DUPLICATED"
                seen.add(custom_id)
            label = item.get("label")
            if label is None and not item.get("emoji"):
                return [*at, "label"], "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED"
            if label is not None and len(str(label)) > MAX_BUTTON_LABEL:
                return [*at, "label"], "BASE_TYPE_MAX_LENGTH"
    return None


def _empty(call: RestCall) -> web.Response | None:
    """Discord refuses a new message with nothing in it: 400, code 50006 "Cannot send an empty
    message" (topics/opcodes-and-status-codes, JSON error codes). Checked where messages are
    created: channel messages and webhook (interaction follow-up) posts."""
    parts = call.path.strip("/").split("/")
    creates = call.method == "POST" and (
        (len(parts) == 3 and parts[0] == "channels" and parts[2] == "messages")
        or (len(parts) == 3 and parts[0] == "webhooks")
    )
    if not creates or call.files:
        return None
    body = call.json if isinstance(call.json, dict) else {}
    if body.get("content") or body.get("embeds") or body.get("sticker_ids"):
        return None
    return _json({"message": "Cannot send an empty message", "code": 50006}, 400)


@dataclass
class RestCall:
    """One REST request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    json: Any  # the JSON body (a dict, or a list for command sync), or None
    files: list[tuple[str, bytes]] = field(default_factory=list)
    time: float = field(default_factory=time.monotonic)  # when it arrived (benchmarks)


@dataclass
class FakeMessage:
    """A message as a user sees it now."""

    id: str
    channel_id: str
    content: str
    author_id: str
    files: list[tuple[str, bytes]] = field(default_factory=list)
    via: str = "channel"  # channel | interaction | followup
    interaction_token: str | None = None
    reply_to: str | None = None
    edits: int = 0
    ephemeral: bool = False  # only the asker sees it
    loading: bool = False  # a deferred response still "thinking…"
    components: list[JSONDict] = field(default_factory=list)  # action rows of buttons
    payload: JSONDict = field(default_factory=dict)


@dataclass
class _Session:
    id: str
    shard: list[int]
    seq: int = 0
    events: list[JSONDict] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None


class FakeDiscord:
    """See the module docstring. One guild (`guild_id`) with one text channel (`channel_id`) and
    one thread in it (`thread_id`); more text channels go in `more_channels` before start."""

    def __init__(
        self,
        token: str = "discord-test-token",
        *,
        application_id: int = 900000000000000001,
        grant_message_content: bool = True,
        shards: int = 1,
        attachment_size_limit: int = DEFAULT_SIZE_LIMIT,
    ) -> None:
        self.token = token
        self.application_id = application_id
        self.grant_message_content = grant_message_content
        self.shards = shards
        self.attachment_size_limit = attachment_size_limit
        self.guild_id = 800000000000000001
        self.channel_id = 810000000000000001
        self.thread_id = 820000000000000001
        #: Further text channels of the guild (its GUILD_CREATE lists them), e.g. for a burst.
        self.more_channels: list[int] = []
        self.calls: list[RestCall] = []
        self.messages: dict[str, FakeMessage] = {}
        self.deleted: list[FakeMessage] = []  # messages the bot deleted
        self.commands: dict[str, list[JSONDict]] = {}  # "global" or guild id -> synced commands
        self.interaction_responses: dict[str, list[JSONDict]] = {}  # interaction id -> callbacks
        self._created: dict[str, float] = {}  # interaction id and token -> when it was created
        self.identified: list[JSONDict] = []
        self.dms_opened: list[str] = []  # user ids POST /users/@me/channels was called for
        self.resumed: list[str] = []
        self._files: dict[str, tuple[bytes, str]] = {}
        #: What people said (MESSAGE_CREATE payloads from `message`), for channel history.
        self.people_messages: list[JSONDict] = []
        self._sessions: dict[str, _Session] = {}
        self._original: dict[str, str] = {}  # interaction token -> @original message id
        self._channel_of: dict[str, str] = {}  # interaction token -> its channel id
        self._kind_of: dict[str, int] = {}  # interaction id -> its type (2, 3 or 4)
        self._clicked: dict[str, str] = {}  # component interaction token -> its message id
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._changed = asyncio.Condition()
        self._sockets: set[web.WebSocketResponse] = set()
        self.echo = False  # print what the bot sends as it changes (typing into the fake)

    # ---- lifecycle

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FakeDiscord is not started")
        return self._url

    @property
    def api_base(self) -> str:
        """What DISCORD_API_BASE should be."""
        return self.url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What DISCORD_GATEWAY_URL should be."""
        return self.url.replace("http://", "ws://", 1) + "/gateway"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/{name}", self._cdn)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=LISTEN_BACKLOG)
        await site.start()
        self._url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self._url

    async def stop(self) -> None:
        for ws in list(self._sockets):
            # (a close waits for the peer's close frame, 10 s by default: a client that went
            # without one must not hold up the fake's stop; a CI run saw it exceed 10 s)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None

    # ---- test controls

    def snowflake(self) -> str:
        return str(990000000000000000 + next(self._ids))

    def add_file(self, name: str, data: bytes, content_type: str) -> str:
        """Serve `data` from the fake CDN; returns its URL."""
        self._files[name] = (data, content_type)
        return f"{self.url}/cdn/{name}"

    def attachment(
        self, name: str, data: bytes, content_type: str, *, voice: bool = False
    ) -> JSONDict:
        """An attachment payload whose URL the fake serves."""
        url = self.add_file(name, data, content_type)
        payload: JSONDict = {
            "id": self.snowflake(),
            "filename": name,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }
        if voice:
            payload |= {"duration_secs": 2.5, "waveform": "AAAA", "flags": 0}
        return payload

    def user(self, user_id: int, name: str, *, bot: bool = False) -> JSONDict:
        return {
            "id": str(user_id),
            "username": name,
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
        }

    def member(
        self, user: JSONDict, *, roles: tuple[int, ...] = (), permissions: int = 0
    ) -> JSONDict:
        return {
            "user": user,
            "roles": [str(r) for r in roles],
            "joined_at": _now(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "pending": False,
            "permissions": str(permissions),
        }

    @property
    def bot_user(self) -> JSONDict:
        return self.user(self.application_id, "tokbot", bot=True)

    def channel_payload(self, channel_id: int | None = None) -> JSONDict:
        if channel_id == self.thread_id:
            return {
                "id": str(self.thread_id),
                "type": 11,
                "guild_id": str(self.guild_id),
                "parent_id": str(self.channel_id),
                "owner_id": "1",
                "name": "a thread",
                "message_count": 0,
                "member_count": 1,
                "rate_limit_per_user": 0,
                "flags": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": _now(),
                    "locked": False,
                },
            }
        return {
            "id": str(channel_id or self.channel_id),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": "general",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "rate_limit_per_user": 0,
        }

    def guild_payload(self) -> JSONDict:
        gid = str(self.guild_id)
        return {
            "id": gid,
            "name": "Test Guild",
            "icon": None,
            "owner_id": "1",
            "unavailable": False,
            "large": False,
            "member_count": 2,
            "features": [],
            "emojis": [],
            "stickers": [],
            "voice_states": [],
            "presences": [],
            "premium_tier": 0,
            "roles": [
                {
                    "id": gid,
                    "name": "@everyone",
                    "permissions": "0",
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "channels": [self.channel_payload(c) for c in [self.channel_id, *self.more_channels]],
            "threads": [self.channel_payload(self.thread_id)],
            "members": [self.member(self.bot_user)],
        }

    async def dispatch(self, event: str, data: JSONDict) -> None:
        """Send a DISPATCH to the session of the shard that owns it (guild events by guild id,
        DMs to shard 0), kept for replay while its socket is down."""
        guild_id = data.get("guild_id")
        for session in self._sessions.values():
            shard_id, count = session.shard
            owner = (int(guild_id) >> 22) % count if guild_id else 0
            if owner != shard_id:
                continue
            session.seq += 1
            frame = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
            session.events.append(frame)
            if session.ws is not None and not session.ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await session.ws.send_str(json.dumps(frame))

    async def interaction(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user_id: int = 111,
        user_name: str = "alice",
        permissions: int = 0,
        roles: tuple[int, ...] = (),
        channel_id: int | None = None,
        dm: bool = False,
        attachments: Mapping[str, JSONDict] | None = None,
        users: Mapping[str, JSONDict] | None = None,
        autocomplete: str | None = None,
        age: float = 0.0,
    ) -> JSONDict:
        """Dispatch INTERACTION_CREATE for `/name` (an application command, or autocomplete of
        the option named `autocomplete`). `attachments` maps option names to attachment
        payloads (from `attachment`), `users` to user payloads (from `user`; option type 6,
        resolved into `users` and, in a server, `members` without their `user`, as Discord's
        docs describe the resolved data of interactions). Returns the payload (its "id" keys
        the responses)."""
        opts: list[JSONDict] = []
        for key, value in (options or {}).items():
            # Discord's option types: 3 string, 4 integer, 5 boolean (application command
            # option type in Discord's docs, interactions/application-commands).
            kind = 5 if isinstance(value, bool) else 4 if isinstance(value, int) else 3
            opt: JSONDict = {"name": key, "type": kind, "value": value}
            if key == autocomplete:
                opt["focused"] = True
            opts.append(opt)
        resolved: JSONDict = {}
        for key, attachment in (attachments or {}).items():
            opts.append({"name": key, "type": 11, "value": attachment["id"]})
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
        for key, chosen in (users or {}).items():
            opts.append({"name": key, "type": 6, "value": chosen["id"]})
            resolved.setdefault("users", {})[chosen["id"]] = chosen
            if not dm:
                member = {k: v for k, v in self.member(chosen).items() if k != "user"}
                resolved.setdefault("members", {})[chosen["id"]] = member
        data = {"id": self.snowflake(), "name": name, "type": 1, "options": opts}
        return await self._interact(
            4 if autocomplete else 2,
            data | {"resolved": resolved},
            user_id=user_id,
            user_name=user_name,
            permissions=permissions,
            roles=roles,
            channel_id=channel_id,
            dm=dm,
            age=age,
        )

    async def click(
        self,
        message_id: str,
        custom_id: str,
        *,
        user_id: int = 111,
        user_name: str = "alice",
        permissions: int = 0,
        roles: tuple[int, ...] = (),
    ) -> JSONDict:
        """A person clicks the button `custom_id` on a message the bot sent: INTERACTION_CREATE
        of type 3 (MESSAGE_COMPONENT) with the message as it is now, as Discord's docs describe
        it (interactions/receiving-and-responding: "Interaction Object", and "Message Component
        Data Structure": `custom_id` and `component_type`, 2 for a button). Discord sends no
        interaction for a button the message does not carry, so neither does the fake (it
        raises). Returns the payload (its "id" keys the responses, `replies_to` finds them)."""
        message = self.messages[message_id]
        buttons = [
            item
            for row in message.components
            for item in row.get("components", [])
            if item.get("custom_id") == custom_id
        ]
        if not buttons:
            raise ValueError(f"message {message_id} has no button {custom_id!r}")
        dm = message.channel_id not in (str(self.channel_id), str(self.thread_id))
        return await self._interact(
            3,
            {"custom_id": custom_id, "component_type": buttons[0]["type"]},
            user_id=user_id,
            user_name=user_name,
            permissions=permissions,
            roles=roles,
            channel_id=None if dm else int(message.channel_id),
            dm=dm,
            message=message.payload,
        )

    async def _interact(
        self,
        kind: int,
        data: JSONDict,
        *,
        user_id: int,
        user_name: str,
        permissions: int,
        roles: tuple[int, ...],
        channel_id: int | None,
        dm: bool,
        age: float = 0.0,
        message: JSONDict | None = None,
    ) -> JSONDict:
        """Dispatch an INTERACTION_CREATE of type `kind` (2 application command, 3 message
        component, 4 autocomplete) from a person, in a guild channel or their DM."""
        user = self.user(user_id, user_name)
        payload: JSONDict = {
            "id": self.snowflake(),
            "application_id": str(self.application_id),
            "type": kind,
            "token": "itoken-" + self.snowflake(),
            "version": 1,
            "locale": "en-US",
            "app_permissions": "0",
            "entitlements": [],
            "authorizing_integration_owners": {},
            "attachment_size_limit": self.attachment_size_limit,
            "data": data,
        }
        if message is not None:
            payload["message"] = message
        if dm:
            dm_id = str(700000000000000000 + user_id)
            payload |= {
                "channel_id": dm_id,
                "channel": {"id": dm_id, "type": 1, "recipients": [user]},
                "user": user,
                "context": 1,
            }
        else:
            channel = self.channel_payload(channel_id)
            payload |= {
                "guild_id": str(self.guild_id),
                "guild_locale": "en-US",
                "channel_id": channel["id"],
                "channel": channel,
                "member": self.member(user, roles=roles, permissions=permissions),
                "context": 0,
            }
        self._channel_of[payload["token"]] = payload["channel_id"]
        self._kind_of[payload["id"]] = kind
        if message is not None:
            self._clicked[payload["token"]] = message["id"]
        # Discord's clock for it starts when it was created: `age` makes it arrive late.
        self._created[payload["id"]] = self._created[payload["token"]] = time.monotonic() - age
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def message(
        self,
        content: str,
        *,
        user_id: int = 111,
        user_name: str = "alice",
        bot: bool = False,
        channel_id: int | None = None,
        dm: bool = False,
        mention_bot: bool = False,
        reply_to: str | None = None,
        attachments: list[JSONDict] | None = None,
        voice: bool = False,
    ) -> JSONDict:
        """Dispatch MESSAGE_CREATE from a user; `mention_bot` puts the bot in `mentions`,
        `reply_to` references a message the fake holds."""
        author = self.user(user_id, user_name, bot=bot)
        payload: JSONDict = {
            "id": self.snowflake(),
            "type": 19 if reply_to else 0,
            "content": content,
            "author": author,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [self.bot_user] if mention_bot else [],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": [],
            "pinned": False,
            "components": [],
            "flags": VOICE_MESSAGE_FLAG if voice else 0,
        }
        if dm:
            payload["channel_id"] = str(700000000000000000 + user_id)
        else:
            payload["channel_id"] = str(channel_id or self.channel_id)
            payload["guild_id"] = str(self.guild_id)
            payload["member"] = {k: v for k, v in self.member(author).items() if k != "user"}
        if reply_to is not None:
            referenced = self.messages[reply_to]
            payload["message_reference"] = {
                "message_id": reply_to,
                "channel_id": referenced.channel_id,
                "type": 0,
            }
            payload["referenced_message"] = referenced.payload
        self.people_messages.append(payload)
        await self.dispatch("MESSAGE_CREATE", payload)
        return payload

    async def edit_message(self, payload: JSONDict, content: str) -> JSONDict:
        """A person edits their message (`payload` from `message`): MESSAGE_UPDATE carrying the
        whole message, as Discord's gateway docs describe it now (and discord.py 2.x builds
        a Message from), with the new content and `edited_timestamp`."""
        edited = payload | {"content": content, "edited_timestamp": _now()}
        await self.dispatch("MESSAGE_UPDATE", edited)
        return edited

    async def delete_message(self, payload: JSONDict) -> None:
        """A person deletes their message: MESSAGE_DELETE with only `id`, `channel_id` and
        `guild_id` (Discord's gateway docs, Message Delete)."""
        gone: JSONDict = {k: payload[k] for k in ("id", "channel_id", "guild_id") if k in payload}
        await self.dispatch("MESSAGE_DELETE", gone)

    @property
    def bot_connected(self) -> bool:
        """Whether a bot holds a gateway session (so dispatched events reach it)."""
        return any(session.ws is not None for session in self._sessions.values())

    def command(self, name: str) -> JSONDict | None:
        """The synced slash command called `name` (global or in the guild), as Discord holds it."""
        for synced in self.commands.values():
            for command in synced:
                if command.get("name") == name:
                    return command
        return None

    def _show(self, what: str, message: FakeMessage) -> None:
        if not self.echo:
            return
        if message.channel_id == str(self.thread_id):
            where = "#a thread"
        elif message.channel_id == str(self.channel_id):
            where = "#general"
        else:
            where = "DM"
        private = " (only you can see this)" if message.ephemeral else ""
        files = "".join(f"\n  [file {name}, {len(data):,} bytes]" for name, data in message.files)
        text = "is thinking…" if message.loading else message.content
        buttons = "".join(f"\n  [{_button_face(b)}]" for b in buttons_of(message))
        print(
            f"[{where}] tokbot {what}{private}:{' ' if text else ''}{text}{files}{buttons}",
            flush=True,
        )

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every gateway socket (as a network blip would); sessions stay resumable."""
        for session in self._sessions.values():
            if session.ws is not None:
                ws, session.ws = session.ws, None
                await ws.close(code=code)

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until `predicate()` is true (checked after every REST call)."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)

    def replies_to(self, interaction: JSONDict) -> list[FakeMessage]:
        """The messages an interaction produced (original response first, then follow-ups)."""
        token = interaction["token"]
        return [m for m in self.messages.values() if m.interaction_token == token]

    def in_channel(self, channel_id: int | str | None = None) -> list[FakeMessage]:
        wanted = str(channel_id or self.channel_id)
        return [m for m in self.messages.values() if m.channel_id == wanted]

    # ---- gateway

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        session: _Session | None = None
        try:
            await ws.send_str(json.dumps({"op": HELLO, "d": {"heartbeat_interval": 41250}}))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op, data = frame.get("op"), frame.get("d")
                if op == HEARTBEAT:
                    await ws.send_str(json.dumps({"op": HEARTBEAT_ACK}))
                elif op == IDENTIFY:
                    session = await self._identify(ws, data)
                    if session is None:
                        break
                elif op == RESUME:
                    session = await self._resume(ws, data)
                    if session is None:
                        break
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: JSONDict) -> _Session | None:
        self.identified.append({k: v for k, v in data.items() if k != "token"})
        if data.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        if int(data.get("intents", 0)) & MESSAGE_CONTENT_INTENT and not self.grant_message_content:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return None
        shard = list(data.get("shard") or [0, 1])
        session = _Session(id=self.snowflake(), shard=shard, ws=ws)
        self._sessions[session.id] = session
        guilds = [g for g in (self.guild_id,) if (g >> 22) % shard[1] == shard[0]]
        session.seq += 1
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "shard": shard,
            "application": {"id": str(self.application_id), "flags": 0},
        }
        await ws.send_str(json.dumps({"op": DISPATCH, "t": "READY", "s": session.seq, "d": ready}))
        for _ in guilds:
            session.seq += 1
            frame = {"op": DISPATCH, "t": "GUILD_CREATE", "s": session.seq}
            await ws.send_str(json.dumps(frame | {"d": self.guild_payload()}))
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: JSONDict) -> _Session | None:
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != self.token:
            await ws.send_str(json.dumps({"op": 9, "d": False}))  # invalid session
            return None
        self.resumed.append(session.id)
        session.ws = ws
        since = int(data.get("seq") or 0)
        for frame in session.events:
            if frame["s"] > since:
                await ws.send_str(json.dumps(frame))
        session.seq += 1
        resumed = {"op": DISPATCH, "t": "RESUMED", "s": session.seq, "d": {}}
        await ws.send_str(json.dumps(resumed))
        return session

    # ---- REST

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        found = self._files.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404)
        return web.Response(body=found[0], headers={"Content-Type": found[1]})

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        body: Any = None
        files: list[tuple[str, bytes]] = []
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                raw = await part.read()
                if part.name == "payload_json":
                    body = json.loads(raw)
                else:
                    files.append((part.filename or "file", bytes(raw)))
        elif request.can_read_body:
            body = await request.json()
        path = "/" + request.match_info["tail"]
        call = RestCall(request.method, path, dict(request.query), body, files)
        self.calls.append(call)
        if path != "/gateway/bot" and request.headers.get("Authorization") != f"Bot {self.token}":
            if not path.startswith(("/webhooks/", "/interactions/")):
                return _json({"message": "401: Unauthorized", "code": 0}, 401)
        try:
            return (
                _too_long(call.json)
                or _empty(call)
                or _bad_components(call.json)
                or await self._route(call)
            )
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _route(self, call: RestCall) -> web.StreamResponse:
        parts = call.path.strip("/").split("/")
        method = call.method
        body: JSONDict = call.json if isinstance(call.json, dict) else {}
        if parts == ["gateway", "bot"]:
            limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
            return _json(
                {"url": self.gateway_url, "shards": self.shards, "session_start_limit": limit}
            )
        if parts == ["users", "@me", "channels"] and method == "POST":
            return self._open_dm(body)
        if parts == ["users", "@me"]:
            return _json(self.bot_user)
        if parts == ["oauth2", "applications", "@me"]:
            return _json(self._app_info())
        if parts[0] == "applications" and method == "PUT":
            scope = parts[3] if len(parts) > 3 and parts[2] == "guilds" else "global"
            synced = [
                cmd | {"id": self.snowflake(), "application_id": str(self.application_id)}
                for cmd in (call.json or [])
            ]
            self.commands[scope] = synced
            return _json(synced)
        if parts[0] == "interactions" and parts[-1] == "callback":
            return self._callback(parts[1], parts[2], call)
        if parts[0] == "webhooks":
            return self._webhook(method, parts[2], parts[3:], call)
        if parts[0] == "channels" and len(parts) >= 3 and parts[2] == "typing":
            return web.Response(status=204)
        if parts[0] == "channels" and len(parts) >= 3 and parts[2] == "messages":
            if method == "GET" and len(parts) == 3:
                return self._history(parts[1], call.query)
            if method == "POST":
                message = self._new_message(parts[1], call, via="channel")
                reference = body.get("message_reference") or {}
                message.reply_to = str(reference.get("message_id") or "") or None
                return _json(message.payload)
            if method == "PATCH" and len(parts) == 4:
                return self._edit(parts[3], call)
        return _json({"message": "404: Not Found", "code": 0}, 404)

    def _open_dm(self, body: JSONDict) -> web.Response:
        """POST /users/@me/channels with `recipient_id` (Discord's docs, resources/user "Create
        DM"): the DM channel object (type 1, its recipient), the same one every time."""
        recipient = str(body.get("recipient_id") or "")
        if not recipient.isdigit():
            return _json({"message": "Invalid Form Body", "code": 50035}, 400)
        self.dms_opened.append(recipient)
        user = self.user(int(recipient), f"user{recipient}")
        return _json(
            {"id": self.dm_channel_id(recipient), "type": 1, "last_message_id": None,
             "recipients": [user], "flags": 0}
        )  # fmt: skip

    def dm_channel_id(self, user_id: int | str) -> str:
        """The DM channel with a user (the same id `interaction(dm=True)` uses)."""
        return str(700000000000000000 + int(user_id))

    def direct_messages(self, user_id: int | str) -> list[str]:
        """What the bot said in its DM with `user_id`."""
        return [m.content for m in self.in_channel(self.dm_channel_id(user_id))]

    def _history(self, channel_id: str, query: Mapping[str, str]) -> web.Response:
        """GET /channels/{id}/messages: newest first, `before`/`after` a message id, `limit`
        1-100 (default 50), people's messages and the bot's alike."""
        try:
            limit = int(query.get("limit", "50"))
            before, after = (int(query[k]) if k in query else None for k in ("before", "after"))
        except ValueError:
            return _json({"message": "Invalid Form Body", "code": 50035}, 400)
        if not 1 <= limit <= 100:
            return _json({"message": "Invalid Form Body", "code": 50035}, 400)
        found = [p for p in self.people_messages if p["channel_id"] == channel_id] + [
            m.payload for m in self.messages.values() if m.channel_id == channel_id and m.payload
        ]
        found = [
            p for p in found
            if (before is None or int(p["id"]) < before) and (after is None or int(p["id"]) > after)
            and not int(p.get("flags") or 0) & EPHEMERAL_FLAG  # only its asker sees it
        ]  # fmt: skip
        found.sort(key=lambda p: int(p["id"]), reverse=True)
        return _json(found[:limit])

    def _app_info(self) -> JSONDict:
        return {
            "id": str(self.application_id),
            "name": "tokbot",
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.user(1, "owner"),
            "verify_key": "0" * 64,
            # GATEWAY_MESSAGE_CONTENT_LIMITED: the toggle an unverified app gets in the portal.
            "flags": (1 << 19) if self.grant_message_content else 0,
        }

    def _callback(self, interaction_id: str, token: str, call: RestCall) -> web.Response:
        created = self._created.get(interaction_id)
        if created is None or time.monotonic() - created > INTERACTION_ACK_WINDOW:
            return _json({"message": "Unknown interaction", "code": 10062}, 404)
        if self.interaction_responses.get(interaction_id):
            return _json(
                {"message": "Interaction has already been acknowledged.", "code": 40060}, 400
            )
        body: JSONDict = call.json if isinstance(call.json, dict) else {}
        kind = int(body.get("type", 0))
        data: JSONDict = body["data"] if isinstance(body.get("data"), dict) else {}
        ephemeral = bool(int(data.get("flags") or 0) & EPHEMERAL_FLAG)
        clicked = self._clicked.get(token)
        if kind in (6, 7) and clicked is None:
            # "Only valid for component-based interactions" (Discord's docs, interactions/
            # receiving-and-responding, "Interaction Callback Type"); the exact error body is
            # not documented, so this is Discord's generic form error.
            invalid = {"code": "INTERACTION_RESPONSE_TYPE_INVALID", "message": "Invalid type"}
            error = {"type": {"_errors": [invalid]}}
            return _json({"message": "Invalid Form Body", "code": 50035, "errors": error}, 400)
        self.interaction_responses.setdefault(interaction_id, []).append(body)
        if kind in (6, 7) and clicked is not None:
            # For a component: 6 acknowledges now and edits the message later, 7 edits the
            # message the button is on; either way that message is the @original response.
            self._original[token] = clicked
            if kind == 7:
                self._edit(clicked, RestCall("PATCH", "", {}, data, list(call.files)))
        if kind in (4, 5):  # a message (4), or "thinking…" (5): the @original response
            original = FakeMessage(
                id=self.snowflake(),
                channel_id=self._channel_of.get(token, str(self.channel_id)),
                content=str(data.get("content") or "") if kind == 4 else "",
                author_id=str(self.application_id),
                files=list(call.files),
                via="interaction",
                interaction_token=token,
                ephemeral=ephemeral,
                loading=kind == 5,
                components=list(data.get("components") or []) if kind == 4 else [],
            )
            original.payload = self._message_payload(original)
            self.messages[original.id] = original
            self._original[token] = original.id
            self._show("answers", original)
        result: JSONDict = {
            "interaction": {
                "id": interaction_id,
                "type": self._kind_of.get(interaction_id, 2),
                "response_message_loading": kind == 5,
                "response_message_ephemeral": ephemeral,
            },
            "resource": {"type": kind},
        }
        if kind in (4, 5, 6, 7):
            result["interaction"]["response_message_id"] = self._original[token]
        return _json(result)

    def _webhook(
        self, method: str, token: str, rest: list[str], call: RestCall
    ) -> web.StreamResponse:
        created = self._created.get(token)
        if created is not None and time.monotonic() - created > INTERACTION_TOKEN_LIFETIME:
            return _json({"message": "Invalid Webhook Token", "code": 50027}, 401)
        if method == "POST" and not rest:
            original = self.messages.get(self._original.get(token, ""))
            if original is not None and original.loading:
                # The first follow-up after a deferral replaces the "thinking…" message and
                # keeps the visibility chosen at defer time (discord.py's
                # `InteractionResponse.defer` docstring; its `ephemeral` flag is ignored).
                return self._edit(original.id, call)
            channel_id = self._channel_of.get(token, str(self.channel_id))
            message = self._new_message(channel_id, call, via="followup")
            message.interaction_token = token
            return _json(message.payload)
        if len(rest) == 2 and rest[0] == "messages":
            message_id = self._original.get(token) if rest[1] == "@original" else rest[1]
            if message_id is None or message_id not in self.messages:
                return _json({"message": "Unknown Message", "code": 10008}, 404)
            if method == "PATCH":
                return self._edit(message_id, call)
            if method == "GET":
                return _json(self.messages[message_id].payload)
            if method == "DELETE":
                self.deleted.append(self.messages.pop(message_id))
                self._show("deleted", self.deleted[-1])
                return web.Response(status=204)
        return _json({"message": "404: Not Found", "code": 0}, 404)

    def _new_message(self, channel_id: str, call: RestCall, *, via: str) -> FakeMessage:
        body: JSONDict = call.json if isinstance(call.json, dict) else {}
        message = FakeMessage(
            id=self.snowflake(),
            channel_id=channel_id,
            content=str(body.get("content") or ""),
            author_id=str(self.application_id),
            files=list(call.files),
            components=list(body.get("components") or []),
            via=via,
            # Only interaction responses and follow-ups can be ephemeral.
            ephemeral=via == "followup" and bool(int(body.get("flags") or 0) & EPHEMERAL_FLAG),
        )
        message.payload = self._message_payload(message)
        self.messages[message.id] = message
        self._show("says", message)
        return message

    def _edit(self, message_id: str, call: RestCall) -> web.Response:
        message = self.messages.get(message_id)
        if message is None:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        body: JSONDict = call.json if isinstance(call.json, dict) else {}
        if "content" in body:
            message.content = str(body["content"] or "")
        if "components" in body:  # [] (or null) takes the buttons away
            message.components = list(body["components"] or [])
        message.files.extend(call.files)
        message.edits += 1
        what = "answers" if message.loading else "edits"
        message.loading = False
        message.payload = self._message_payload(message)
        self._show(what, message)
        return _json(message.payload)

    def _message_payload(self, message: FakeMessage) -> JSONDict:
        payload: JSONDict = {
            "id": message.id,
            "channel_id": message.channel_id,
            "type": 0,
            "content": message.content,
            "author": self.bot_user,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [
                {
                    "id": self.snowflake(),
                    "filename": name,
                    "size": len(data),
                    "url": f"{self.url}/cdn/{name}",
                    "proxy_url": f"{self.url}/cdn/{name}",
                }
                for name, data in message.files
            ],
            "embeds": [],
            "pinned": False,
            "components": message.components,
            "flags": (EPHEMERAL_FLAG if message.ephemeral else 0)
            | (LOADING_FLAG if message.loading else 0),
        }
        if message.channel_id in (str(self.channel_id), str(self.thread_id)):
            payload["guild_id"] = str(self.guild_id)
        return payload


def buttons_of(message: FakeMessage) -> list[JSONDict]:
    """The buttons a message carries, in order."""
    return [item for row in message.components for item in row.get("components", [])]


def _button_face(button: JSONDict) -> str:
    emoji = button.get("emoji") or {}
    face = " ".join(str(p) for p in (emoji.get("name"), button.get("label")) if p)
    return f"{face or '(button)'} {button.get('custom_id') or button.get('url') or ''}".strip()


async def _serve(host: str, port: int, token: str) -> None:
    from adapters.discord.fake_input import relay_stdin  # it builds on this module

    fake = FakeDiscord(token)
    fake.echo = True
    url = await fake.start(host, port)
    print(
        f"Fake Discord at {url}\n  DISCORD_TOKEN={token}\n  DISCORD_API_BASE={fake.api_base}\n"
        f"  DISCORD_GATEWAY_URL={fake.gateway_url}\nCtrl-C stops it.",
        flush=True,
    )
    try:
        await relay_stdin(fake)
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a loopback fake of Discord.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--token", default="discord-test-token")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.token))


if __name__ == "__main__":
    main()

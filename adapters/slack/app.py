"""The slack-bolt AsyncApp: listeners acknowledge at once, then hand the work to the core in a
background task (so a slow TokModel answer never delays Slack's 3-second ack)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Coroutine, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import translate
from adapters.slack.assistant import THINKING, Pane, pane_thread, set_status
from adapters.slack.blocks import FEEDBACK_ACTION, STOP_ACTION, parse_feedback, parse_stop
from adapters.slack.budget import (
    SLACK_APPENDS_PER_MINUTE,
    SLACK_UPDATES_PER_MINUTE,
    WorkspaceBudgets,
)
from adapters.slack.intake import AckFirst
from adapters.slack.replier import SlackReplier
from adapters.slack.streaming import Mode, StreamingPolicy
from adapters.slack.thread import SlackThread
from adapters.slack.users import UserDirectory
from bot.core import Core
from bot.domain import Author, Incoming, Replier
from bot.inbox import Ticket
from bot.logs import new_request_id
from bot.memory import ObservedMessage
from bot.tasks import drain_tasks

log = logging.getLogger(__name__)

#: Times one Web API call is retried after a 429 (each waits the Retry-After Slack gives).
RATE_LIMIT_RETRIES = 3


class SlackBot:
    """Owns the AsyncApp and the tasks it starts; `drain` waits for (then cancels) them."""

    def __init__(
        self,
        core: Core,
        *,
        token: str,
        signing_secret: str | None,
        api_url: str,
        session: aiohttp.ClientSession,
        edit_interval: float = 1.0,
        edits_per_minute: int = SLACK_UPDATES_PER_MINUTE,
        edit_window: float = 60.0,
        streaming: Mode = "auto",
        budget_share: int = 1,
    ) -> None:
        """`budget_share`: how many processes (workers of `tokbot run --workers N`) share the
        workspaces' chat.update and appendStream budgets; each keeps 1/N of them."""
        self._core = core
        self._token = token
        self._session = session
        self._edit_interval = edit_interval
        self.client = AsyncWebClient(
            token=token,
            base_url=_with_slash(api_url),
            session=session,
            # Slack answers a burst (chat.update is ~50 a minute per workspace) with 429 and
            # Retry-After: wait and retry, so a busy workspace still sees every final answer
            # (the edit budget keeps chat.update under the limit; this covers the rest).
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(),
                AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
            ],
        )
        self.users = UserDirectory(self.client)
        self._budgets = WorkspaceBudgets(_share(edits_per_minute, budget_share), edit_window)
        # (No edit budget, no append budget: both are off for loads beyond one workspace's.)
        appends = SLACK_APPENDS_PER_MINUTE if edits_per_minute > 0 else 0
        self._append_budgets = WorkspaceBudgets(_share(appends, budget_share), edit_window)
        self.streaming = StreamingPolicy(streaming)
        self.pane = Pane(self.client)
        #: Counts the HTTP requests being acknowledged; answers start after a crowd of them.
        self.intake = AckFirst()
        self._file_hosts = _file_hosts(api_url)
        self._tasks: set[asyncio.Task[None]] = set()
        #: The workspace's URL, for links to remembered messages (auth.test, once).
        self._workspace: str | None = None
        #: Set by `drain`: no new work starts (HTTP requests get 503 so Slack retries them).
        self.closing = False
        #: The bot's ids from auth.test, as bolt's context gives them (`signed_in`).
        self.ids: AsyncBoltContext | None = None
        bolt_logger = logging.getLogger("tokbot.slack.bolt")
        bolt_logger.addFilter(_drop_token_skipped_warning)
        self.app = AsyncApp(
            client=self.client,
            signing_secret=signing_secret or "",
            request_verification_enabled=bool(signing_secret),
            # The listeners below only ack and start a task, so running them before the response
            # costs nothing; with False, bolt polls for the ack every 10 ms (+10 ms per ack).
            process_before_response=True,
            logger=bolt_logger,
        )
        core.inbox.can_answer(translate.PLATFORM, self._recover)
        self.app.command(re.compile(r"^/\S+$"))(self._on_command)
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        self.app.event("assistant_thread_started")(self._on_thread_started)
        self.app.event("assistant_thread_context_changed")(self._on_context_changed)
        self.app.action(FEEDBACK_ACTION)(self._on_feedback)
        self.app.action(STOP_ACTION)(self._on_stop)

    # -- listeners: store, ack, then work in the background ------------------------------------
    # Each event is stored (`Core.accept`, one INSERT) before the ack goes out, so an
    # acknowledged message survives a crash; people are looked up (`users.info`) after it.

    async def _on_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        if not command.get("channel_id"):
            await ack()
            log.warning("Slack: a slash command without a channel; ignored")
            return
        user_id = str(command.get("user_id", ""))
        incoming = translate.from_command(command, Author(user_id, _name(command, user_id)))
        ticket = await self._core.accept(incoming, {"channel": incoming.key.channel})
        # in_channel: everyone sees the command that the answer below replies to; a command
        # answered privately (or unknown: refused privately) stays private too.
        spec = self._core.registry.get(incoming.command)
        await ack(response_type="ephemeral" if spec is None or spec.private_reply else "in_channel")
        if ticket is not None:
            self._spawn(self._run_command(command, incoming, ticket), ticket)

    async def _on_mention(
        self, ack: AsyncAck, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        cleaned = translate.well_formed(event)
        if translate.is_from_bot(event) or translate.is_direct_message(event) or cleaned is None:
            # (DMs arrive as `message` events too; answering both would answer twice.)
            await ack()
            return
        await self._accept_event(ack, body, cleaned, context, command="ask")

    def signed_in(self, user_id: object, bot_id: object, team_id: object) -> None:
        """auth.test's answer at start: the ids `mention` gives the listener."""
        if isinstance(user_id, str) and user_id and isinstance(bot_id, str) and bot_id:
            self.ids = AsyncBoltContext(
                bot_user_id=user_id, bot_id=bot_id, team_id=str(team_id or "")
            )

    async def mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """An `app_mention` the HTTP adapter read and verified itself (bolt's listener and
        middleware cost more than storing it): as `_on_mention`, returning once it is stored
        (or refused), when it may be acknowledged."""
        assert self.ids is not None
        # (The ack it calls only records a response; the adapter answers with its own.)
        await self._on_mention(AsyncAck(), body, event, self.ids)  # type: ignore[no-untyped-call]

    async def _on_message(
        self, ack: AsyncAck, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        if event.get("subtype") in (translate.EDITED, translate.DELETED):
            await ack()
            self._spawn_plain(self._remember_change(event, _team(body, context)))
            return
        cleaned = translate.well_formed(event)
        if (
            translate.is_from_bot(event)
            or event.get("subtype") not in translate.PERSON_SUBTYPES
            or cleaned is None
        ):
            await ack()
            return
        event = cleaned
        if translate.audio_attachments(event.get("files") or ()):
            await self._accept_event(ack, body, event, context, command="voice")
        elif translate.is_direct_message(event) or (
            # A mention that shares a file may arrive only as this message, without its
            # app_mention (bolt-python#925); when both come, the claim below answers once.
            event.get("subtype") == "file_share" and translate.mentions(event, context.bot_user_id)
        ):
            # In channels, people talk to the bot by mentioning it (an app_mention event).
            await self._accept_event(ack, body, event, context, command="ask")
        else:
            await ack()
            if translate.observable(event, context.bot_user_id) and not self.closing:
                self._spawn_plain(self._observe(event, _team(body, context)))

    async def _on_thread_started(self, ack: AsyncAck, event: dict[str, Any]) -> None:
        """The assistant pane opened a new thread: greet, and suggest prompts (no TokModel call,
        so nothing to store before the ack)."""
        await ack()
        thread = pane_thread(event)
        if thread is not None and not self.closing:
            self._spawn_plain(self.pane.started(thread))

    async def _on_context_changed(self, ack: AsyncAck, event: dict[str, Any]) -> None:
        """The person moved to another channel with the pane open: prompts about that one."""
        await ack()
        thread = pane_thread(event)
        if thread is not None and not self.closing:
            self._spawn_plain(self.pane.context_changed(thread))

    # -- buttons (block_actions): acknowledged at once, answered privately -------------------

    async def _on_feedback(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        """A 👍/👎 under an answer (value `positive:<turn id>` / `negative:<turn id>`)."""
        await ack()
        parsed = parse_feedback(str(action.get("value") or ""))
        clicker = _clicker(body)
        if parsed is None or clicker is None:
            log.warning("Slack: a feedback click without a valid value or user; ignored")
            return
        value, turn_id = parsed

        async def record() -> None:
            said = await self._core.record_feedback(translate.PLATFORM, turn_id, clicker, value)
            await self._tell_clicker(body, said)

        self._spawn_plain(record())

    async def _on_stop(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """The Stop button of a streaming answer (value `<turn id>`); only its asker may."""
        await ack()
        turn_id = parse_stop(str(action.get("value") or ""))
        clicker = _clicker(body)
        if turn_id is None or clicker is None:
            log.warning("Slack: a Stop click without a valid value or user; ignored")
            return

        async def stop() -> None:
            await self._tell_clicker(body, await self._core.stop_answer(turn_id, clicker))

        self._spawn_plain(stop())

    async def _tell_clicker(self, body: Mapping[str, Any], text: str) -> None:
        """Show `text` to the person who clicked, only to them: through the action's
        response_url (an ephemeral message; replacing the clicked one when that was ephemeral
        itself, the asker's Stop offer), else chat.postEphemeral."""
        container = body.get("container") or {}
        url = body.get("response_url")
        if isinstance(url, str) and url:
            reply = {
                "response_type": "ephemeral",
                "replace_original": bool(container.get("is_ephemeral")),
                "text": translate.to_slack(text),
            }
            try:
                async with self._session.post(url, json=reply) as response:
                    if response.status == 200:
                        return
                    log.info("Slack: response_url refused an acknowledgement (%s)", response.status)
            except aiohttp.ClientError as exc:
                log.info("Slack: response_url failed: %s", type(exc).__name__)
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        user = (body.get("user") or {}).get("id")
        if channel and user:
            await self.client.chat_postEphemeral(
                channel=str(channel),
                user=str(user),
                thread_ts=container.get("thread_ts"),
                text=translate.to_slack(text),
            )

    async def _accept_event(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        event: dict[str, Any],
        context: AsyncBoltContext,
        *,
        command: str,
    ) -> None:
        user_id = str(event.get("user", ""))
        files = event.get("files") or ()
        incoming = translate.from_message(
            event,
            team_id=str(body.get("team_id") or context.team_id or ""),
            author=Author(user_id, user_id),  # named after the ack (users.info)
            bot_user_id=context.bot_user_id,
            event_id=translate.claim_id(event, command, body.get("event_id")),
            command=command,
            attachments=(
                translate.audio_attachments(files)
                if command == "voice"
                else tuple(translate.attachment(f) for f in files)
            ),
        )
        route = {"channel": incoming.key.channel, "thread_ts": incoming.key.thread}
        ticket = await self._core.accept(incoming, route)
        await ack()
        if ticket is not None:
            self._spawn(self._run_event(event, context, incoming, ticket), ticket)

    # -- team memory (after the ack; a crash may lose one, which memory can afford) -----------

    async def _observe(self, event: dict[str, Any], team_id: str) -> None:
        """Keep a channel message not addressed to the bot, if the channel has memory on."""
        channel, ts = str(event["channel"]), str(event.get("ts") or "")
        thread_ts = str(event.get("thread_ts") or "")
        key = translate.conversation_key(team_id, channel, thread_ts)
        if not ts or not await self._core.memory.enabled(key):  # (no users.info when off)
            return
        author = await self.users.author(str(event["user"]))
        await self._core.memory.observe(
            ObservedMessage(
                key,
                message_id=ts,
                author_id=author.id,
                author_name=author.name,
                content=translate.unescape(str(event.get("text") or "")),
                created_at=float(ts),
                link=translate.permalink(await self._workspace_url(), channel, ts, thread_ts),
            )
        )

    async def _remember_change(self, event: dict[str, Any], team_id: str) -> None:
        """An edit or deletion of a channel message: the kept copy follows (if there is one)."""
        channel = event.get("channel")
        if not isinstance(channel, str) or not channel:
            return
        key = translate.conversation_key(team_id, channel)
        if event.get("subtype") == translate.DELETED:
            deleted = event.get("deleted_ts")
            if isinstance(deleted, str) and deleted:
                await self._core.memory.deleted(key, deleted)
            return
        changed = translate.changed_message(event)
        if changed is not None:
            await self._core.memory.edited(key, *changed)

    async def _workspace_url(self) -> str | None:
        """The workspace's URL (auth.test's `url`), asked once, for message links."""
        if self._workspace is None:
            try:
                self._workspace = str((await self.client.auth_test()).get("url") or "")
            except Exception as exc:  # links are a nicety: the message is kept without one
                log.warning("Slack auth.test failed; remembered messages get no link: %s", exc)
                return None
        return self._workspace or None

    # -- the work ------------------------------------------------------------------------------

    async def _run_command(
        self, command: dict[str, Any], incoming: Incoming, ticket: Ticket
    ) -> None:
        with self._core.handing_over(ticket):  # cancelled (stopping): answered after a restart
            await self.intake.turn()
            if incoming.command in translate.ADMIN_COMMANDS and incoming.text.strip():
                author = await self.users.author(incoming.author.id, incoming.author.name)
                incoming = dataclasses.replace(incoming, author=author)  # is_admin, from users.info
            replier = self._replier(
                incoming, thread_ts=None, response_url=command.get("response_url")
            )
        await self._core.handle(incoming, replier, ticket)

    async def _run_event(
        self, event: dict[str, Any], context: AsyncBoltContext, incoming: Incoming, ticket: Ticket
    ) -> None:
        status = False
        with self._core.handing_over(ticket):  # cancelled (stopping): answered after a restart
            await self.intake.turn()
            if incoming.command == "ask" and translate.is_direct_message(event):
                # In DMs (and the assistant pane, a DM thread) Slack shows "tokbot is thinking…"
                # until the first reply; it stands in for the placeholder message.
                status = await set_status(
                    self.client, incoming.key.channel, incoming.key.thread, THINKING
                )
                if event.get("thread_ts") and not await self._core.store.history(incoming.key, 1):
                    await self.pane.title(incoming.key.channel, incoming.key.thread, incoming.text)
            author = await self.users.author(incoming.author.id)
            incoming = dataclasses.replace(incoming, author=author)
            ts, thread_ts = event.get("ts"), event.get("thread_ts")
            thread = None
            if incoming.command == "ask" and isinstance(ts, str) and thread_ts and thread_ts != ts:
                # A reply in a thread: people may have talked there before calling the bot in.
                thread = SlackThread(
                    self.client,
                    self.users,
                    channel=incoming.key.channel,
                    thread_ts=str(thread_ts),
                    message_ts=ts,
                    bot_user_id=context.bot_user_id,
                    bot_id=context.bot_id,
                )
            replier = self._replier(
                incoming, thread_ts=incoming.key.thread, thread=thread, status_shown=status
            )
        try:
            await self._core.handle(incoming, replier, ticket)
        finally:
            if status and not replier.posted:  # no reply cleared it (a private one, or none)
                await set_status(self.client, incoming.key.channel, incoming.key.thread, "")

    async def _recover(
        self, incoming: Incoming, route: Mapping[str, str]
    ) -> tuple[Incoming, Replier] | None:
        """An event a dead process acknowledged: answered in its channel (and thread) as
        plain messages (a slash command's response_url was not kept: it is a credential)."""
        channel = route.get("channel")
        if not channel:
            return None
        author = await self.users.author(incoming.author.id, incoming.author.name)
        incoming = dataclasses.replace(incoming, author=author)
        return incoming, self._replier(incoming, thread_ts=route.get("thread_ts") or None)

    def _replier(
        self,
        incoming: Incoming,
        *,
        thread_ts: str | None,
        response_url: str | None = None,
        thread: SlackThread | None = None,
        status_shown: bool = False,
    ) -> SlackReplier:
        return SlackReplier(
            self.client,
            self._session,
            token=self._token,
            channel=incoming.key.channel,
            thread_ts=thread_ts,
            file_hosts=self._file_hosts,
            edit_interval=self._edit_interval,
            response_url=response_url or None,
            thread=thread,
            user_id=incoming.author.id,
            budget=self._budgets.get(incoming.key.workspace),
            append_budget=self._append_budgets.get(incoming.key.workspace),
            workspace=incoming.key.workspace,
            streaming=self.streaming,
            status_shown=status_shown,
        )

    # -- background tasks ----------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], ticket: Ticket) -> None:
        if self.closing:
            work.close()
            self._core.release(ticket)  # stored: answered after the restart, or by a replica
            log.warning("Slack request acknowledged while shutting down; not handled")
            return
        task = asyncio.create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_plain(self, work: Coroutine[Any, Any, None]) -> None:
        """Background work that answers no stored event (the assistant pane's greeting)."""
        task = asyncio.create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(work: Coroutine[Any, Any, None]) -> None:
        new_request_id()  # this task's log lines, the adapter's included, share the core's id
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:  # the core answers its own failures; this is the adapter's
            log.exception("Slack event handling failed")

    @property
    def busy(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> None:
        """Let answers in progress finish for up to `timeout` seconds, then cancel the rest
        (at once when this is cancelled: a second Ctrl-C)."""
        self.closing = True
        self._core.inbox.cannot_answer(translate.PLATFORM)
        await drain_tasks(self._tasks, timeout)


def _team(body: Mapping[str, Any], context: AsyncBoltContext) -> str:
    return str(body.get("team_id") or context.team_id or "")


def _clicker(body: Mapping[str, Any]) -> Author | None:
    """Who clicked a button (a block_actions payload's `user`)."""
    user = body.get("user")
    if not isinstance(user, Mapping) or not isinstance(user.get("id"), str) or not user["id"]:
        return None
    return Author(user["id"], str(user.get("name") or user.get("username") or user["id"]))


def _name(command: Mapping[str, Any], user_id: str) -> str:
    return str(command.get("user_name") or user_id)


def _share(per_minute: int, processes: int) -> int:
    """One process's part of a per-workspace rate (0, no budget, stays 0)."""
    return max(1, per_minute // processes) if per_minute > 0 else 0


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _file_hosts(api_url: str) -> frozenset[str]:
    """Hosts besides *.slack.com that may receive the bot token for downloads: the Web API's
    own host when it is not Slack (a test double)."""
    host = (urlsplit(api_url).hostname or "").lower()
    return frozenset({host}) if host and not host.endswith("slack.com") else frozenset()


def _drop_token_skipped_warning(record: logging.LogRecord) -> bool:
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself and then warns, at every start,
    that the client we pass wins over it. That is intended here, so the warning is noise."""
    return "`token` will be unused" not in record.getMessage()

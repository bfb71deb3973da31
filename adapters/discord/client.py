"""The discord.py client: gateway events and slash commands become Incoming messages for the
core. Every handler runs as its own task, so the gateway loop never waits on TokModel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, cast

import discord
from discord import app_commands

from adapters.discord import translate
from adapters.discord.buttons import FeedbackButton, StopButton
from adapters.discord.commands import build_tree
from adapters.discord.replier import (
    NO_MENTIONS,
    InteractionReplier,
    LateCommandReplier,
    MessageReplier,
)
from bot.core import Core
from bot.domain import ConversationKey, Incoming, Replier
from bot.inbox import Ticket
from bot.logs import new_request_id
from bot.memory import ObservedMessage
from bot.settings import Settings
from bot.tasks import drain_tasks
from bot.text import one_line

log = logging.getLogger(__name__)


def intents() -> discord.Intents:
    """Guilds, messages and DMs, plus message content (privileged: mentions and voice messages
    need it; enable it in the Developer Portal)."""
    wanted = discord.Intents.default()
    wanted.message_content = True
    wanted.members = False
    wanted.presences = False
    return wanted


class TokbotClient(discord.AutoShardedClient):
    def __init__(self, core: Core, settings: Settings, *, guild_ready_timeout: float = 2.0) -> None:
        sharding: dict[str, Any] = {"shard_count": settings.discord_shard_count}
        if settings.discord_shards is not None:  # this process runs only these shards
            sharding["shard_ids"] = settings.discord_shards
        # tokbot never joins voice channels (voice messages are files), so discord.py's start-up
        # warnings that PyNaCl and davey are missing are noise; these class flags are how
        # discord.py itself silences them after the first client (discord/client.py).
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            intents=intents(),
            allowed_mentions=NO_MENTIONS,
            chunk_guilds_at_startup=False,
            max_messages=None,
            guild_ready_timeout=guild_ready_timeout,
            **sharding,
        )
        self.core = core
        self.settings = settings
        core.inbox.can_answer(translate.PLATFORM, self.recover)
        self.tree = build_tree(self)
        self.tree.on_error = self._on_tree_error  # type: ignore[method-assign]
        self._tasks: set[asyncio.Task[None]] = set()
        self.sync_error: str | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def launch_shards(self) -> None:
        # With DISCORD_GATEWAY_URL set, discord.py connects to DiscordWebSocket.DEFAULT_GATEWAY
        # (which the adapter points at it) once the shard count is known.
        if self.settings.discord_gateway_url and self.shard_count is None:
            self.shard_count, _, _ = await self.http.get_bot_gateway()
        await super().launch_shards()

    async def setup_hook(self) -> None:
        # Clicks on answers' buttons reach us whoever sent them (before a restart, a replica).
        self.add_dynamic_items(FeedbackButton, StopButton)
        guild_id = self.settings.discord_dev_guild_id
        try:
            if guild_id is not None:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d commands to guild %s", len(synced), guild_id)
            else:
                synced = await self.tree.sync()
                log.info("synced %d global commands (may take a while to show)", len(synced))
        except discord.HTTPException as exc:
            self.sync_error = f"{exc.status} {exc.text}"
            log.error(
                "could not register the slash commands (%s): invite the bot with the "
                "applications.commands scope (`tokbot discord-invite`)",
                self.sync_error,
            )

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(_with_request_id(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, timeout: float) -> None:
        self.core.inbox.cannot_answer(translate.PLATFORM)
        await drain_tasks(self._tasks, timeout)

    async def close(self) -> None:
        self.core.inbox.cannot_answer(translate.PLATFORM)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await super().close()

    # -- slash commands -----------------------------------------------------------------

    async def run_command(
        self,
        interaction: discord.Interaction,
        command: str,
        text: str = "",
        options: dict[str, str] | None = None,
        files: Sequence[discord.Attachment] = (),
    ) -> None:
        incoming = Incoming(
            key=translate.interaction_key(interaction),
            author=translate.interaction_author(interaction, self.settings),
            command=command,
            text=text,
            options=options or {},
            attachments=tuple(translate.attachment(f) for f in files),
            message_id=None,
            event_id=f"interaction:{interaction.id}",
            slash=True,
            raw=interaction,
        )
        # Stored before the acknowledgement (one INSERT), so a crash after it loses nothing: a
        # restarted process (or a replica) answers in the channel. The interaction's token is
        # a credential and is not kept.
        route = {"channel": str(interaction.channel_id or "")}
        ticket = await self.core.accept(incoming, route)
        if ticket is None:
            return  # handled before (a replay)
        # The work starts while the acknowledgement travels (the replier's first message waits
        # for it, and answers in the channel if Discord refused it).
        # Commands whose replies are all private are deferred ephemerally (fixed at defer time).
        spec = self.core.registry.get(command)
        private = spec is not None and spec.private_reply
        acknowledged = asyncio.ensure_future(
            interaction.response.defer(thinking=True, ephemeral=private)
        )
        acknowledged.add_done_callback(_note_refusal)
        replier = InteractionReplier(
            interaction,
            acknowledged,
            fallback=lambda: _late_replier(interaction, command),
            ephemeral=private,
        )
        self.spawn(self.core.handle(incoming, replier, ticket))

    async def _on_tree_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        if isinstance(error, app_commands.CommandNotFound):
            log.warning("unknown slash command: %s", error)
            text = "I don't know that command (my command list may be out of date); try /help."
        elif isinstance(error, app_commands.TransformerError):
            log.warning("slash command option refused: %s", error)
            text = f"I can't use {one_line(str(error.value), 80)!r} there: pick one of the choices."
        else:
            log.error("slash command failed", exc_info=error)
            text = "😵 Sorry, something went wrong on my side; please try again."
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.send_message(
                    text, ephemeral=True, allowed_mentions=NO_MENTIONS
                )
        except discord.HTTPException as exc:
            log.warning("could not explain a refused slash command: %s", exc)

    # -- messages ------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        incoming = self.message_incoming(message)
        if incoming is None:
            if self._observable(message):
                self.spawn(_memory_work(self._observe(message)))
            return
        route = {"channel": str(message.channel.id), "message": str(message.id)}
        ticket = await self.core.accept(incoming, route)
        if ticket is not None:
            self.spawn(self._answer(incoming, message, ticket))

    async def _answer(self, incoming: Incoming, message: discord.Message, ticket: Ticket) -> None:
        typing: asyncio.Task[None] | None = None
        if incoming.command == "ask" and not incoming.author.is_bot:
            # "tokbot is typing…" until the answer's first words arrive. It goes out beside
            # the work (its round trip used to come before TokModel was asked); the first
            # message waits for it, or Discord would show the typing after the answer.
            typing = self.spawn(_typing(message))
        me = self.user
        replier = MessageReplier(
            message, bot_user_id=me.id if me is not None else None, before_first=typing
        )
        await self.core.handle(incoming, replier, ticket)

    async def recover(
        self, incoming: Incoming, route: Mapping[str, str]
    ) -> tuple[Incoming, Replier] | None:
        """An event a dead process accepted: a message gets its reply; a slash command is
        answered in its channel after a line naming who asked (its interaction token was not
        kept, and would have expired)."""
        channel_id = route.get("channel", "")
        if not channel_id.isdigit():
            return None
        channel = self.get_partial_messageable(int(channel_id))
        message_id = route.get("message", "")
        if message_id.isdigit():
            # A partial message replies and sends like the Message that MessageReplier wants.
            partial = cast(discord.Message, channel.get_partial_message(int(message_id)))
            return incoming, MessageReplier(partial)
        who = one_line(incoming.author.name, 64)
        preface = f"⏳ {who}: I restarted before answering your `/{incoming.command}`; here it is."
        return incoming, LateCommandReplier(
            channel, preface, discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
        )

    # -- team memory: guild messages not addressed to the bot ------------------------------

    def _observable(self, message: discord.Message) -> bool:
        """A person's message in a server channel (never a DM), kept if memory is on there."""
        return message.guild is not None and not message.author.bot and bool(message.content)

    async def _observe(self, message: discord.Message) -> None:
        key = translate.message_key(message)
        await self.core.memory.observe(
            ObservedMessage(
                key,
                message_id=str(message.id),
                author_id=str(message.author.id),
                author_name=message.author.display_name,
                content=message.content,
                created_at=message.created_at.timestamp(),
                # https://discord.com/channels/<guild>/<channel>/<message>
                link=message.jump_url,
            )
        )

    def _raw_key(self, guild_id: int | None, channel_id: int) -> ConversationKey | None:
        """The kept messages' channel for a raw event (a thread's is its parent's)."""
        if guild_id is None:
            return None
        return translate.conversation_key(guild_id, self.get_channel(channel_id), channel_id)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        # Raw: edits of messages older than the cache arrive too. An embed being added
        # (a link preview) is also an update, without `content`: nothing to change then.
        key = self._raw_key(payload.guild_id, payload.channel_id)
        content = payload.data.get("content")
        author = payload.data.get("author") or {}
        if key is None or not isinstance(content, str) or author.get("bot"):
            return
        self.spawn(_memory_work(self._edited(key, str(payload.message_id), content)))

    async def _edited(self, key: ConversationKey, message_id: str, content: str) -> None:
        await self.core.memory.edited(key, message_id, content)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        key = self._raw_key(payload.guild_id, payload.channel_id)
        if key is not None:
            self.spawn(_memory_work(self._deleted(key, str(payload.message_id))))

    async def _deleted(self, key: ConversationKey, message_id: str) -> None:
        await self.core.memory.deleted(key, message_id)

    def message_incoming(self, message: discord.Message) -> Incoming | None:
        """Voice messages and audio uploads → `voice`; mentions, replies to the bot and DMs →
        `ask`; anything else is not for us."""
        me = self.user
        if me is None or message.author.id == me.id:
            return None
        if translate.is_voice(message):
            command, text = "voice", ""
        elif self._addressed(message, me.id):
            command, text = "ask", translate.strip_mentions(message.content, me.id)
        else:
            return None
        return Incoming(
            key=translate.message_key(message),
            author=translate.message_author(message, self.settings),
            command=command,
            text=text,
            attachments=translate.attachments(message),
            message_id=str(message.id),
            event_id=f"message:{message.id}",
            raw=message,
        )

    @staticmethod
    def _addressed(message: discord.Message, me: int) -> bool:
        if message.guild is None:
            return True
        if any(user.id == me for user in message.mentions):
            return True
        ref = message.reference
        resolved = ref.resolved if ref is not None else None
        return isinstance(resolved, discord.Message) and resolved.author.id == me


async def _with_request_id(work: Coroutine[Any, Any, None]) -> None:
    new_request_id()  # this task's log lines, the adapter's included, share the core's id
    await work


async def _typing(message: discord.Message) -> None:
    try:
        await message.channel.typing()
    except discord.HTTPException as exc:
        log.debug("no typing indicator: %s", exc)


async def _memory_work(work: Coroutine[Any, Any, Any]) -> None:
    """Keeping a message is no answer anyone waits for: a failure is logged, never raised."""
    try:
        await work
    except Exception:
        log.warning("team memory could not follow a Discord message", exc_info=True)


def _late_replier(interaction: discord.Interaction, command: str) -> LateCommandReplier:
    channel: discord.abc.Messageable
    if isinstance(interaction.channel, discord.abc.Messageable):
        channel = interaction.channel
    else:  # not cached (or a forum/category): send by id
        channel = interaction.client.get_partial_messageable(interaction.channel_id or 0)
    who = one_line(interaction.user.display_name, 64)
    preface = f"⏳ {who}: Discord stopped waiting for my reply to your `/{command}`, so here it is."
    return LateCommandReplier(channel, preface, interaction.filesize_limit)


def _note_refusal(acknowledged: asyncio.Future[Any]) -> None:
    """Log a refused acknowledgement even when nothing is posted (a replay the core ignores)."""
    if not acknowledged.cancelled() and (exc := acknowledged.exception()) is not None:
        log.info("Discord refused the acknowledgement: %s", exc)

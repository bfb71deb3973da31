"""How the core speaks back on Discord: one Replier for slash commands (the deferred original
response, then follow-ups) and one for plain messages (a reply, then messages in the channel)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from typing import Any

import discord

from adapters.discord.buttons import view as buttons_for
from bot.domain import (
    AnswerControls,
    Attachment,
    Author,
    EarlierMessage,
    OutgoingFile,
    PlatformHelp,
)
from bot.errors import UserError
from bot.text import split_message

log = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = 2000
EDIT_INTERVAL = 1.0
#: Without mentions parsed, model output saying "@everyone" pings nobody.
NO_MENTIONS = discord.AllowedMentions.none()
HELP = PlatformHelp(
    addressing=(
        "Mention me, DM me or reply to me to ask. Start with a command to run it, e.g. "
        "`@tokbot imagine make it blue` with a picture attached."
    ),
)


def fit(text: str) -> list[str]:
    """`text` as messages Discord accepts: 2,000 characters at most (Discord's limit for
    `content`, counted in code points), split at paragraph, line or word breaks."""
    return split_message(text, MAX_MESSAGE_LENGTH)


def shortened(text: str) -> str:
    """`text` cut to Discord's limit with a visible "…", where one message must hold it."""
    return text if len(text) <= MAX_MESSAGE_LENGTH else text[: MAX_MESSAGE_LENGTH - 1] + "…"


def _marking_last(pieces: list[str]) -> list[tuple[bool, str]]:
    """The pieces of one post, each with whether it is the last (which carries the buttons)."""
    return [(index == len(pieces) - 1, piece) for index, piece in enumerate(pieces)]


def _with(buttons: discord.ui.View | None) -> dict[str, Any]:
    """`view=` for sending a new message: given only when there are buttons (discord.py's
    send methods take a View or nothing, not None)."""
    return {} if buttons is None else {"view": buttons}


def _too_big(file: OutgoingFile, limit: int) -> UserError:
    return UserError(
        f"📦 The result ({file.filename}, {len(file.data) / 1024 / 1024:.1f} MB) is larger than "
        f"Discord allows here ({limit / 1024 / 1024:.0f} MB), so I can't post it."
    )


def _as_file(file: OutgoingFile, limit: int) -> discord.File:
    if len(file.data) > limit:
        raise _too_big(file, limit)
    return discord.File(io.BytesIO(file.data), filename=file.filename, description=file.title)


async def download(attachment: Attachment, max_bytes: int) -> bytes:
    """Fetch a Discord attachment (through the client's HTTP session), capped at `max_bytes`."""
    limit_mb = max_bytes / 1024 / 1024
    if attachment.size is not None and attachment.size > max_bytes:
        raise UserError(f"{attachment.filename} is too large: the limit is {limit_mb:.0f} MB.")
    item = attachment.ref
    if not isinstance(item, discord.Attachment):
        raise UserError(f"I can't fetch {attachment.filename}.")
    try:
        data = await item.read()
    except (discord.HTTPException, discord.NotFound) as exc:
        log.warning("attachment download failed: %s", exc)
        raise UserError(f"I couldn't download {attachment.filename}; please try again.") from None
    if len(data) > max_bytes:
        raise UserError(f"{attachment.filename} is too large: the limit is {limit_mb:.0f} MB.")
    return data


class InteractionReplier:
    """For a slash command: the first post fills the original response (which `defer` showed as
    "tokbot is thinking…"), later posts are follow-ups; edits go to whichever message the id
    names. The work starts while the acknowledgement is on its way: the first message waits for
    it, and if Discord refused it (too late for its 3-second window) everything goes to the
    channel instead, through `fallback`.

    Private posts (`private=True`) are ephemeral. Whether the deferred response is ephemeral is
    fixed at defer time (`ephemeral`, for commands whose every reply is private), and the first
    follow-up after a defer only fills that "thinking…" message (discord.py's
    `InteractionResponse.defer`). So a private post while a public "thinking…" is still
    showing deletes it first, and goes out as an ephemeral follow-up of its own."""

    max_message_length = MAX_MESSAGE_LENGTH
    edit_interval = EDIT_INTERVAL
    stream_placeholder: str | None = None  # Discord already shows "tokbot is thinking…"
    platform_help = HELP

    def __init__(
        self,
        interaction: discord.Interaction,
        acknowledged: asyncio.Future[Any] | None = None,
        fallback: Callable[[], LateCommandReplier] | None = None,
        *,
        ephemeral: bool = False,
    ) -> None:
        self._interaction = interaction
        self._original_id: str | None = None
        self._ephemeral = ephemeral  # the deferred response is ephemeral
        self._original_gone = False  # the public "thinking…" was deleted for a private post
        self._acknowledged = acknowledged
        self._fallback = fallback
        self._late: LateCommandReplier | None = None

    async def _refused(self) -> LateCommandReplier | None:
        """None once the acknowledgement went through; else the channel replier to use."""
        if self._acknowledged is not None:
            acknowledged, self._acknowledged = self._acknowledged, None
            try:
                await acknowledged
            except discord.HTTPException as exc:
                if self._fallback is None:
                    raise
                log.warning("the command could not be acknowledged (%s); answering in the "
                            "channel", exc)  # fmt: skip
                self._late = self._fallback()
        return self._late

    async def post(
        self, text: str, *, private: bool = False, controls: AnswerControls | None = None
    ) -> str:
        """Long text continues in follow-ups; the first message's id is returned."""
        if (late := await self._refused()) is not None:
            # (no ephemeral messages without an interaction)
            return await late.post(text, controls=controls)
        if private and not self._ephemeral and self._thinking():
            try:
                await self._interaction.delete_original_response()
                self._original_gone = True
            except discord.HTTPException as exc:  # then it fills the public "thinking…"
                log.warning("could not withdraw the public response: %s", exc)
        pieces = fit(text)
        ids = [
            await self._send(piece, private=private, controls=controls if last else None)
            for last, piece in _marking_last(pieces)
        ]
        return ids[0]

    def _thinking(self) -> bool:
        """Whether the deferred "thinking…" response is still to be filled."""
        return self._original_id is None and not self._original_gone

    async def _send(
        self, text: str, *, private: bool = False, controls: AnswerControls | None = None
    ) -> str:
        buttons = buttons_for(controls)
        if self._thinking():
            message = await self._interaction.edit_original_response(
                content=text, allowed_mentions=NO_MENTIONS, view=buttons
            )
            self._original_id = str(message.id)
            return self._original_id
        sent = await self._interaction.followup.send(
            text, wait=True, ephemeral=private, allowed_mentions=NO_MENTIONS, **_with(buttons)
        )
        return str(sent.id)

    async def edit(
        self, message_id: str, text: str, *, controls: AnswerControls | None = None
    ) -> None:
        if (late := await self._refused()) is not None:
            return await late.edit(message_id, text, controls=controls)
        text = shortened(text)
        buttons = buttons_for(controls)  # None takes them away
        if message_id == self._original_id:
            await self._interaction.edit_original_response(
                content=text, allowed_mentions=NO_MENTIONS, view=buttons
            )
        else:
            await self._interaction.followup.edit_message(
                int(message_id), content=text, allowed_mentions=NO_MENTIONS, view=buttons
            )

    async def upload(self, file: OutgoingFile, comment: str | None = None) -> None:
        if (late := await self._refused()) is not None:
            return await late.upload(file, comment)
        item = _as_file(file, self._interaction.filesize_limit)
        first, *rest = fit(comment or "")
        if self._thinking():
            message = await self._interaction.edit_original_response(
                content=first, attachments=[item], allowed_mentions=NO_MENTIONS
            )
            self._original_id = str(message.id)
        else:
            await self._interaction.followup.send(
                first, file=item, wait=True, allowed_mentions=NO_MENTIONS
            )
        for piece in rest:
            await self._send(piece)

    async def download(self, attachment: Attachment, max_bytes: int) -> bytes:
        return await download(attachment, max_bytes)


class _ChannelReplier:
    """What the repliers that send plain channel messages share: the messages they sent (to
    edit them later), and downloads."""

    max_message_length = MAX_MESSAGE_LENGTH
    edit_interval = EDIT_INTERVAL
    stream_placeholder: str | None = None
    platform_help = HELP

    def __init__(self) -> None:
        self._sent: dict[str, discord.Message] = {}

    def _keep(self, sent: discord.Message) -> str:
        self._sent[str(sent.id)] = sent
        return str(sent.id)

    async def edit(
        self, message_id: str, text: str, *, controls: AnswerControls | None = None
    ) -> None:
        sent = self._sent[message_id]
        self._sent[message_id] = await sent.edit(
            content=shortened(text), allowed_mentions=NO_MENTIONS, view=buttons_for(controls)
        )

    async def post(
        self, text: str, *, private: bool = False, controls: AnswerControls | None = None
    ) -> str:
        """Long text continues in further messages; the first message's id is returned."""
        ids = [
            self._keep(await self._send(piece, buttons=buttons_for(controls) if last else None))
            for last, piece in _marking_last(fit(text))
        ]
        return ids[0]

    async def upload(self, file: OutgoingFile, comment: str | None = None) -> None:
        item = _as_file(file, self._filesize_limit())
        first, *rest = fit(comment or "")
        self._keep(await self._send(first or None, file=item))
        for piece in rest:
            self._keep(await self._send(piece))

    def _filesize_limit(self) -> int:
        raise NotImplementedError

    async def _send(
        self,
        text: str | None,
        file: discord.File | None = None,
        buttons: discord.ui.View | None = None,
    ) -> discord.Message:
        raise NotImplementedError

    async def download(self, attachment: Attachment, max_bytes: int) -> bytes:
        return await download(attachment, max_bytes)


class MessageReplier(_ChannelReplier):
    """Answers a mention, a reply to the bot, a DM or a voice message: the first post replies
    to it, longer answers continue in the same channel. Private posts are plain messages too:
    Discord has ephemeral messages only as answers to interactions."""

    def __init__(
        self,
        message: discord.Message,
        *,
        bot_user_id: int | None = None,
        before_first: asyncio.Future[None] | None = None,
    ) -> None:
        """`before_first`: what the first message waits for (the typing indicator's request,
        which must not land after it)."""
        super().__init__()
        self._message = message
        self._bot_user_id = bot_user_id
        self._before_first = before_first
        #: `bot.domain.ThreadReader`: in a thread, people may have talked before the mention.
        self.in_existing_thread = isinstance(message.channel, discord.Thread)

    async def earlier_messages(self, limit: int) -> list[EarlierMessage]:
        """The thread's newest `limit` messages before this one, oldest first; [] when Discord
        refuses (no Read Message History) or fails."""
        if not isinstance(self._message.channel, discord.Thread):
            return []
        found: list[EarlierMessage] = []
        try:
            async for item in self._message.channel.history(limit=limit, before=self._message):
                if item.type not in (discord.MessageType.default, discord.MessageType.reply):
                    continue  # joins, pins, the thread's starter stub and the like
                author = item.author
                mine = self._bot_user_id is not None and author.id == self._bot_user_id
                found.append(
                    EarlierMessage(
                        Author(str(author.id), author.display_name, is_bot=author.bot),
                        item.content,
                        str(item.id),
                        by_this_bot=mine,
                    )
                )
        except discord.HTTPException as exc:
            log.warning("could not read the thread's earlier messages: %s", exc)
            return []
        return found[::-1]

    def _filesize_limit(self) -> int:
        guild = self._message.guild
        return guild.filesize_limit if guild else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

    async def _send(
        self,
        text: str | None,
        file: discord.File | None = None,
        buttons: discord.ui.View | None = None,
    ) -> discord.Message:
        if self._before_first is not None:
            before, self._before_first = self._before_first, None
            await before  # (it never raises: see `client._typing`)
        if file is not None:  # a file goes to the channel, as it always has
            return await self._message.channel.send(text, file=file, allowed_mentions=NO_MENTIONS)
        if not self._sent:
            return await self._message.reply(text, allowed_mentions=NO_MENTIONS, **_with(buttons))
        return await self._message.channel.send(
            text, allowed_mentions=NO_MENTIONS, **_with(buttons)
        )


class LateCommandReplier(_ChannelReplier):
    """For a slash command Discord stopped waiting for (its 3-second window to acknowledge it
    passed, e.g. while tokbot was starting): the answer goes to the channel as plain messages,
    after one saying whose command it answers, so nothing asked is dropped."""

    def __init__(self, channel: discord.abc.Messageable, preface: str, filesize_limit: int) -> None:
        super().__init__()
        self._channel = channel
        self._preface: str | None = preface
        self._file_limit = filesize_limit

    async def _introduce(self) -> None:
        if self._preface is not None:
            preface, self._preface = self._preface, None
            await self._channel.send(preface, allowed_mentions=NO_MENTIONS)

    def _filesize_limit(self) -> int:
        return self._file_limit

    async def _send(
        self,
        text: str | None,
        file: discord.File | None = None,
        buttons: discord.ui.View | None = None,
    ) -> discord.Message:
        await self._introduce()
        if file is None:
            return await self._channel.send(text, allowed_mentions=NO_MENTIONS, **_with(buttons))
        return await self._channel.send(text, file=file, allowed_mentions=NO_MENTIONS)

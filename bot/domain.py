"""Types that cross the adapter/core boundary. Frozen: adapters build them, the core reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ConversationKey:
    """Where a conversation lives. `thread` is "" outside threads; a thread is its own conversation
    but shares its channel's settings."""

    platform: str
    workspace: str
    channel: str
    thread: str = ""

    @property
    def channel_key(self) -> ConversationKey:
        """The parent channel's key, which owns settings (model, persona, transcription mode)."""
        return ConversationKey(self.platform, self.workspace, self.channel, "")


@dataclass(frozen=True)
class Author:
    id: str
    name: str
    is_admin: bool = False
    is_bot: bool = False


#: Who the bot's own turns are stored as.
BOT_AUTHOR = Author(id="tokbot", name="tokbot", is_bot=True)


@dataclass(frozen=True)
class Attachment:
    """A file on an incoming message; its adapter knows how to fetch it (Replier.download)."""

    filename: str
    content_type: str | None = None
    size: int | None = None
    url: str | None = None
    is_voice: bool = False
    ref: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Incoming:
    """One command invocation. `command` is the name without the slash ("ask", "imagine", ...);
    plain mentions and DMs arrive as "ask". `options` are typed options from platforms that have
    them (Discord); text platforms put `--name value` options in `text` and the core parses them."""

    key: ConversationKey
    author: Author
    command: str
    text: str = ""
    options: dict[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    message_id: str | None = None
    event_id: str | None = None
    #: Sent as a slash command (its errors are private replies, like its refusals).
    slash: bool = False
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class OutgoingFile:
    data: bytes
    filename: str
    content_type: str
    title: str | None = None


@dataclass(frozen=True)
class PlatformHelp:
    """What `/help` says a platform offers; its adapter knows, the core words it."""

    #: Commands people can type as slash commands there (None: every command).
    slash_commands: frozenset[str] | None = None
    #: How else people talk to the bot there (mentions, DMs, attaching files), in one line.
    addressing: str = ""
    #: Voice messages and audio uploads are transcribed without a command.
    voice_messages: bool = True


@dataclass(frozen=True)
class AnswerControls:
    """Buttons under an answer's message: Stop while it streams, then 👍/👎 feedback. A
    platform without buttons ignores them."""

    #: The stored assistant turn the message shows.
    turn_id: int
    #: The only person who may stop it.
    asker_id: str
    #: True: a Stop button; False (finished): the 👍/👎 feedback buttons.
    streaming: bool


class FeedbackValue(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"


class Replier(Protocol):
    """What an adapter gives the core for one conversation: how to speak back in it."""

    #: The platform's longest message, in characters; longer text is continued in new messages.
    max_message_length: int
    #: Least seconds between two edits of one streamed message (platform rate limits).
    edit_interval: float
    #: Shown at once while an answer is being prepared (None: show nothing until text arrives).
    stream_placeholder: str | None
    #: What this platform offers, for /help.
    platform_help: PlatformHelp

    async def post(
        self, text: str, *, private: bool = False, controls: AnswerControls | None = None
    ) -> str:
        """Send a new message; return its id (used by `edit`). `private`: only the asker should
        see it (an ephemeral message where the platform has them; its id may be "", it is never
        edited). `controls`: the buttons an answer's message carries (None: no buttons)."""
        ...

    async def edit(
        self, message_id: str, text: str, *, controls: AnswerControls | None = None
    ) -> None:
        """Replace the text of a message this replier posted, and its buttons (`controls`;
        None removes them)."""
        ...

    async def upload(self, file: OutgoingFile, comment: str | None = None) -> None:
        """Post a file into the conversation."""
        ...

    async def download(self, attachment: Attachment, max_bytes: int) -> bytes:
        """Fetch an incoming attachment; raise `bot.errors.UserError` when it is over
        `max_bytes` or cannot be fetched."""
        ...


class NativeStream(Protocol):
    """A message the platform streams itself (Slack's chat.startStream): text is only ever
    appended, never taken back, so the caller gives only text that may stay as it is."""

    #: The message's id (as `Replier.post` returns; `Replier.edit` may still replace its text
    #: once it is stopped).
    message_id: str

    async def append(self, markdown: str) -> None:
        """Add `markdown` to the end of the message."""
        ...

    async def stop(self, markdown: str = "", *, controls: AnswerControls | None = None) -> None:
        """Add the last `markdown` and end the stream: the message is final, with `controls`'
        buttons (None: none)."""
        ...


@runtime_checkable
class NativeStreamer(Protocol):
    """A Replier that can stream an answer natively instead of posting and editing it."""

    async def start_stream(
        self, markdown: str, *, controls: AnswerControls | None = None
    ) -> NativeStream | None:
        """Start a streamed message showing `markdown` (with `controls`, the Stop button, as
        the platform can); None when streaming is not available here (then nothing was shown,
        and the caller posts and edits instead)."""
        ...

    async def post_whole(
        self, markdown: str, *, controls: AnswerControls | None = None
    ) -> str | None:
        """Post a message that is complete before its stream would start, as that stream would
        end (one call where a stream takes a start and a stop); its id, or None when that is not
        available here (nothing was shown; the caller posts)."""
        ...


def streams_natively(replier: object) -> bool:
    """`isinstance(replier, NativeStreamer)`, decided once per class: a runtime Protocol's
    isinstance looks up each of its methods every time (15–45 µs on Python 3.11, twice per
    answer), and a replier's methods are its class's."""
    cls = type(replier)
    native = _NATIVE_CLASSES.get(cls)
    if native is None:
        native = _NATIVE_CLASSES[cls] = issubclass(cls, NativeStreamer)
    return native


_NATIVE_CLASSES: dict[type, bool] = {}


@dataclass(frozen=True)
class EarlierMessage:
    """A message that came before the bot was first addressed in a thread."""

    author: Author
    text: str
    message_id: str | None = None
    #: Written by this bot (stored as its own turn), not by a person.
    by_this_bot: bool = False


@runtime_checkable
class ThreadReader(Protocol):
    """A Replier that can read the thread it answers in, so a bot called into a conversation
    that people started without it knows what was said (Slack threads)."""

    #: Whether the addressed message replies in a thread that already has earlier messages.
    in_existing_thread: bool

    async def earlier_messages(self, limit: int) -> list[EarlierMessage]:
        """Up to `limit` messages of the thread before the addressed one, oldest first ([] when
        they cannot be read: the answer goes on without them)."""
        ...


class TurnRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class TurnKind(StrEnum):
    TEXT = "text"
    TRANSCRIPT = "transcript"
    MEDIA = "media"  # a note that an image or audio file was generated
    PICTURES = "pictures"  # a question sent with pictures (kept by reference: turn_images)
    SUMMARY = "summary"  # a running summary of the turns before it (bot.folding)


class TurnStatus(StrEnum):
    OK = "ok"
    PENDING = "pending"  # an answer being streamed
    FAILED = "failed"  # the request failed; `error` says why
    INTERRUPTED = "interrupted"  # cut off half-way (stream broken, shutdown, crash)
    STOPPED = "stopped"  # stopped by its asker; `content` is what was shown


@dataclass(frozen=True)
class Turn:
    id: int
    role: TurnRole
    kind: TurnKind
    content: str
    author_id: str
    author_name: str
    status: TurnStatus
    created_at: float
    error: str | None = None
    platform_message_id: str | None = None

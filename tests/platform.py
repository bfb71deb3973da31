"""A stand-in chat platform for core tests: records what the bot posted, edited and uploaded,
the way a user would see it. (Adapters are tested against real platform fakes elsewhere.)"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from bot.domain import (
    AnswerControls,
    Attachment,
    Author,
    ConversationKey,
    Incoming,
    OutgoingFile,
    PlatformHelp,
)
from bot.errors import UserError


@dataclass
class RecordingReplier:
    max_message_length: int = 2000
    edit_interval: float = 0.0
    stream_placeholder: str | None = "…"
    platform_help: PlatformHelp = field(default_factory=PlatformHelp)
    files: dict[str, bytes] = field(default_factory=dict)  # attachment url -> bytes
    messages: dict[str, str] = field(default_factory=dict)  # id -> current text
    order: list[str] = field(default_factory=list)
    private: set[str] = field(default_factory=set)  # ids of messages only the asker sees
    edits: int = 0
    #: id -> the buttons the message carries now (None: none)
    controls: dict[str, AnswerControls | None] = field(default_factory=dict)
    uploads: list[OutgoingFile] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def post(
        self, text: str, *, private: bool = False, controls: AnswerControls | None = None
    ) -> str:
        message_id = f"m{next(self._ids)}"
        self.messages[message_id] = text
        self.controls[message_id] = controls
        self.order.append(message_id)
        if private:
            self.private.add(message_id)
        return message_id

    async def edit(
        self, message_id: str, text: str, *, controls: AnswerControls | None = None
    ) -> None:
        assert message_id in self.messages, "edited a message that was never posted"
        self.messages[message_id] = text
        self.controls[message_id] = controls
        self.edits += 1

    async def upload(self, file: OutgoingFile, comment: str | None = None) -> None:
        self.uploads.append(file)

    async def download(self, attachment: Attachment, max_bytes: int) -> bytes:
        data = self.files[attachment.url or attachment.filename]
        if len(data) > max_bytes:
            raise UserError(f"{attachment.filename} is too large.")
        return data

    @property
    def texts(self) -> list[str]:
        """Every message as the user sees it now, oldest first."""
        return [self.messages[i] for i in self.order]

    @property
    def last(self) -> str:
        return self.texts[-1]


KEY = ConversationKey("test", "w1", "c1")
ALICE = Author("u-alice", "Alice")
ADMIN = Author("u-admin", "Ada", is_admin=True)


def message(
    command: str,
    text: str = "",
    *,
    key: ConversationKey = KEY,
    author: Author = ALICE,
    attachments: tuple[Attachment, ...] = (),
    options: dict[str, str] | None = None,
    event_id: str | None = None,
    slash: bool = False,
) -> Incoming:
    return Incoming(
        key=key,
        author=author,
        command=command,
        text=text,
        options=options or {},
        slash=slash,
        attachments=attachments,
        event_id=event_id,
    )

"""Files sent with a question: downloaded (within the byte budget) and read into it by
`bot.files`. Pictures and audio are not read here: other handlers own them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.commands import Invocation
from bot.domain import Attachment
from bot.errors import UserError
from bot.files import (
    READABLE,
    FileText,
    NotRead,
    question_with_files,
    read_file,
    worth_downloading,
)
from bot.media import is_audio_attachment, is_image_attachment


@dataclass
class AttachedFiles:
    """What a question's files gave: the texts read, and one line for each file not read (or
    read only in part)."""

    read: list[FileText] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def question(self, typed: str) -> str:
        return question_with_files(typed, self.read)


def file_attachments(attachments: Iterable[Attachment]) -> list[Attachment]:
    """The attachments that are files to read (not pictures, not audio)."""
    return [a for a in attachments if not is_image_attachment(a) and not is_audio_attachment(a)]


async def read_attached(inv: Invocation) -> AttachedFiles:
    """Read the question's files in order, `TOKBOT_MAX_FILE_CHARS` for all of them together."""
    result = AttachedFiles()
    room = inv.core.settings.max_file_chars
    for attachment in file_attachments(inv.incoming.attachments):
        name = attachment.filename
        if room <= 0:
            result.notes.append(f"📎 I didn't read {name}: the files before it filled the limit.")
            continue
        found = await _read_one(inv, attachment, room)
        if isinstance(found, NotRead):
            result.notes.append(found.reason)
            continue
        result.read.append(found)
        room -= len(found.text)
        if found.cut is not None:
            room = 0  # (what is left would be a fragment)
            result.notes.append(f"📎 {name} is long: I read {found.cut}.")
    return result


async def _read_one(inv: Invocation, attachment: Attachment, room: int) -> FileText | NotRead:
    name, limit = attachment.filename, inv.core.settings.max_file_bytes
    if not worth_downloading(name, attachment.content_type):
        return NotRead(name, f"📎 I didn't read {name}: {READABLE}.")
    too_big = NotRead(name, f"📎 I didn't read {name}: it is over {limit / 1024 / 1024:.0f} MB.")
    if attachment.size is not None and attachment.size > limit:
        return too_big
    reserve = min(attachment.size, limit) if attachment.size else limit
    try:
        async with inv.core.downloads.hold(reserve):
            data = await inv.replier.download(attachment, limit)
            if len(data) > limit:
                return too_big
            # Decoding megabytes, or a PDF's pages, takes CPU: off the event loop.
            return await asyncio.to_thread(read_file, name, data, room)
    except UserError as exc:  # the download failed or was refused: say so, answer the rest
        return NotRead(name, f"📎 {exc}")

"""The terminal adapter: the same commands as Discord and Slack, typed (or piped) line by line.

Files the bot makes are saved in the output folder; `/transcribe <path>` and
`/imagine --image <path>` stand in for attaching a file.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import mimetypes
import sys
import time
from pathlib import Path
from typing import TextIO

from bot.core import Core
from bot.domain import Attachment, Author, ConversationKey, Incoming, OutgoingFile, PlatformHelp
from bot.errors import UserError

PROMPT = "you> "
BOT = "tokbot> "
QUIT_WORDS = frozenset({"/quit", "/exit"})


class ConsoleReplier:
    """Prints replies; a streamed answer grows on one line as edits extend it."""

    max_message_length = 1_000_000
    edit_interval = 0.0
    stream_placeholder: str | None = None
    platform_help = PlatformHelp(
        addressing=(
            "Type a question without a slash to ask it. `/imagine --image pic.png <change>` "
            "edits a picture; `/transcribe <file>` stands in for a voice message."
        ),
        voice_messages=False,
    )

    def __init__(self, out: TextIO, output_dir: Path) -> None:
        self._out = out
        self._output_dir = output_dir
        self._shown: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._line_open = False

    async def post(self, text: str, *, private: bool = False) -> str:
        # One person at the terminal: every reply is private already.
        self.end_line()
        self._write(BOT + text)
        message_id = str(next(self._ids))
        self._shown[message_id] = text
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        before = self._shown.get(message_id, "")
        if text.startswith(before) and self._line_open:
            self._write(text[len(before) :])
        else:
            self.end_line()
            self._write(BOT + text)
        self._shown[message_id] = text

    async def upload(self, file: OutgoingFile, comment: str | None = None) -> None:
        self._output_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self._output_dir / f"{stamp}-{next(self._ids)}-{file.filename}"
        path.write_bytes(file.data)
        self.end_line()
        self._write(f"{BOT}📎 saved {path} ({len(file.data):,} bytes)")
        self.end_line()

    async def download(self, attachment: Attachment, max_bytes: int) -> bytes:
        path = Path(str(attachment.ref))
        size = path.stat().st_size
        if size > max_bytes:
            limit_mb = max_bytes / 1024 / 1024
            raise UserError(f"{attachment.filename} is too large: the limit is {limit_mb:.0f} MB.")
        return await asyncio.to_thread(path.read_bytes)

    def end_line(self) -> None:
        if self._line_open:
            self._out.write("\n")
            self._out.flush()
            self._line_open = False

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()
        self._line_open = True


class ConsoleAdapter:
    """Reads commands from `lines` (stdin by default) and answers them one at a time, in order."""

    def __init__(self, core: Core, *, out: TextIO = sys.stdout, output_dir: Path) -> None:
        self._core = core
        self._out = out
        self._replier = ConsoleReplier(out, output_dir)
        user = _login_name()
        # The person at the terminal owns the bot, so admin commands are theirs.
        self._author = Author(id=user, name=user, is_admin=True)
        self._key = ConversationKey("console", "local", "terminal")
        self._message_ids = itertools.count(1)

    async def run(self, stdin: TextIO = sys.stdin) -> None:
        interactive = stdin.isatty()
        if interactive:
            self._out.write("tokbot console — /help lists the commands, /quit leaves.\n")
        while True:
            if interactive:
                self._out.write(PROMPT)
                self._out.flush()
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                break
            line = line.strip()
            if line in QUIT_WORDS:
                break
            if line:
                await self.handle_line(line)

    async def handle_line(self, line: str) -> None:
        try:
            incoming = self._parse(line)
        except UserError as exc:
            await self._replier.post(str(exc))
        else:
            await self._core.handle(incoming, self._replier)
        self._replier.end_line()

    def _parse(self, line: str) -> Incoming:
        command, text = "ask", line
        if line.startswith("/"):
            head, _, text = line.partition(" ")
            command = head[1:].lower()
        attachments: tuple[Attachment, ...] = ()
        if command in ("transcribe", "voice"):
            text, path = _split_last_word(text)
            if not path:
                raise UserError("Give the audio file's path: `/transcribe recording.m4a`.")
            attachments = (_attachment(path),)
        elif command == "imagine":
            text, image = _take_image_option(text)
            if image:
                attachments = (_attachment(image),)
        return Incoming(
            key=self._key,
            author=self._author,
            command=command,
            text=text,
            attachments=attachments,
            message_id=f"console-{next(self._message_ids)}",
        )


def _split_last_word(text: str) -> tuple[str, str]:
    head, _, last = text.strip().rpartition(" ")
    return head, last


def _take_image_option(text: str) -> tuple[str, str | None]:
    """`--image PATH` among the leading options (the console's way to attach a picture)."""
    words = text.strip().split(" ")
    index = 0
    while index < len(words) and words[index].startswith("--"):
        word = words[index]
        if word == "--image" and index + 1 < len(words):
            return " ".join(words[:index] + words[index + 2 :]), words[index + 1]
        if word.startswith("--image="):
            return " ".join(words[:index] + words[index + 1 :]), word.partition("=")[2]
        index += 1 if "=" in word else 2  # skip the option and its value
    return text, None


def _attachment(path_text: str) -> Attachment:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise UserError(f"No such file: {path_text}")
    content_type, _ = mimetypes.guess_type(path.name)
    return Attachment(
        filename=path.name, content_type=content_type, size=path.stat().st_size, ref=path
    )


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "you"

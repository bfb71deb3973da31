"""The terminal adapter: the same commands as Discord and Slack, typed (or piped) line by line.

Files the bot makes are saved in the output folder; `/transcribe <path>`,
`/imagine --image <path>` and `/ask --image <path> …` stand in for attaching a file (quote paths
with spaces).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import io
import itertools
import logging
import mimetypes
import re
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from bot.core import Core
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

PROMPT = "you> "
BOT = "tokbot> "
QUIT_WORDS = frozenset({"/quit", "/exit"})
#: A terminal in canonical mode keeps at most 4,095 characters of a line and drops the rest
#: silently (Linux: N_TTY_BUF_SIZE in drivers/tty/n_tty.c). readline reads key by key, so
#: only without it can a line have been cut there.
TERMINAL_LINE_LIMIT = 4095


class ConsoleReplier:
    """Prints replies; a streamed answer grows on one line as edits extend it."""

    max_message_length = 1_000_000
    edit_interval = 0.0
    stream_placeholder: str | None = None
    platform_help = PlatformHelp(
        addressing=(
            "Type a question without a slash to ask it. `/ask --image shot.png <question>` asks "
            "about a picture; `/imagine --image pic.png <change>` edits one; "
            "`/transcribe <file>` stands in for a voice message "
            "(`/transcribe --answer <file>`: a voice question)."
        ),
        voice_messages=False,
    )

    def __init__(self, out: TextIO, output_dir: Path) -> None:
        self._out = out
        self._output_dir = output_dir
        self._shown: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._line_open = False

    async def post(
        self, text: str, *, private: bool = False, controls: AnswerControls | None = None
    ) -> str:
        # One person at the terminal: every reply is private already.
        self.end_line()
        self._write(BOT + text)
        message_id = str(next(self._ids))
        self._shown[message_id] = text
        return message_id

    async def edit(
        self, message_id: str, text: str, *, controls: AnswerControls | None = None
    ) -> None:
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

    def __init__(
        self,
        core: Core,
        *,
        out: TextIO = sys.stdout,
        output_dir: Path,
        log_file: Path | None = None,
    ) -> None:
        self._core = core
        self._out = out
        self._log_file = log_file
        self._replier = ConsoleReplier(out, output_dir)
        user = _login_name()
        # The person at the terminal owns the bot, so admin commands are theirs.
        self._author = Author(id=user, name=user, is_admin=True)
        self._key = ConversationKey("console", "local", "terminal")
        self._message_ids = itertools.count(1)

    async def run(self, stdin: TextIO = sys.stdin) -> None:
        if not stdin.isatty():  # piped or scripted: plain lines, no prompt
            with _log_lines_on_their_own(self._replier):
                while piped := await asyncio.to_thread(stdin.readline):
                    if not await self._take(piped):
                        break
            return
        edited = _line_editing()
        banner = "tokbot console — /help lists the commands, /quit (or Ctrl-D) leaves."
        if self._log_file is not None:
            banner += f"\nLog lines go to {self._log_file}"
        self._out.write(banner + "\n")
        with _terminal_restored(stdin):
            while True:
                try:
                    line = await _read_line(PROMPT)
                except asyncio.CancelledError:  # Ctrl-C: leave the shell a fresh line
                    self._out.write("\n")
                    self._out.flush()
                    raise
                if line is None:  # Ctrl-D: end the prompt's line, as a shell does
                    self._out.write("\n")
                    break
                if not edited and len(line) >= TERMINAL_LINE_LIMIT:
                    await self._replier.post(
                        f"That line reached the terminal's limit of {TERMINAL_LINE_LIMIT} "
                        "characters, so its end may be missing (this Python has no readline)."
                    )
                    self._replier.end_line()
                if not await self._take(line):
                    break

    async def _take(self, line: str) -> bool:
        """Handle one line; False when it asks to leave."""
        line = line.strip()
        if line in QUIT_WORDS:
            return False
        if line:
            await self.handle_line(line)
        return True

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
            text, path = _split_path(text)
            if not path:
                raise UserError("Give the audio file's path: `/transcribe recording.m4a`.")
            attachments = (_attachment(path),)
        elif command == "imagine":
            text, paths = _take_image_options(text, most=1)
            attachments = tuple(_attachment(path) for path in paths)
        elif command == "ask":
            text, paths = _take_image_options(text)
            attachments = tuple(_attachment(path) for path in paths)
        return Incoming(
            key=self._key,
            author=self._author,
            command=command,
            text=text,
            attachments=attachments,
            message_id=f"console-{next(self._message_ids)}",
        )


@contextlib.contextmanager
def _log_lines_on_their_own(replier: ConsoleReplier) -> Iterator[None]:
    """Piped, stderr often lands where stdout does (`2>&1`): end an answer's open line before
    a log line is written, so none lands inside an answer."""

    def end_line(record: logging.LogRecord) -> bool:
        replier.end_line()
        return True

    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(end_line)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(end_line)


def _words(text: str) -> list[str]:
    """Shell-like words, so a path with spaces can be quoted."""
    try:
        return shlex.split(text)
    except ValueError as exc:  # e.g. "No closing quotation"
        raise UserError(f'{exc}: quote a path with spaces as "my file.wav".') from None


def _split_path(text: str) -> tuple[str, str]:
    """The last word that isn't a `--flag` is the file; the flags stay in the text, so
    `/transcribe memo.wav --answer` works as `/transcribe --answer memo.wav` does."""
    words = _words(text)
    flags: list[str] = []
    while words and words[-1].startswith("--"):
        flags.insert(0, words.pop())
    if not words:
        return shlex.join(flags), ""
    return shlex.join([*words[:-1], *flags]), words[-1]


#: `--image PATH` (or `--image=PATH`) ending a line, the path perhaps quoted.
_TRAILING_IMAGE = re.compile(r"""(?:^|\s)--image(?:=|\s+)("[^"]*"|'[^']*'|[^\s"']+)\s*$""")


def _take_image_options(text: str, *, most: int | None = None) -> tuple[str, list[str]]:
    """`--image PATH`s (up to `most`) among the leading options or ending the line (the console's
    way to attach pictures), in the order typed; the prompt is otherwise left as typed (quotes
    and apostrophes included)."""
    limit = most if most is not None else len(text)  # each takes a few characters at least
    paths: list[str] = []
    while len(paths) < limit:
        text, path = _leading_image_option(text)
        if path is None:
            break
        paths.append(path)
    ending: list[str] = []
    while len(paths) + len(ending) < limit and (match := _TRAILING_IMAGE.search(text)):
        text = text[: match.start()].strip()
        ending.insert(0, _words(match.group(1))[0])
    return text, paths + ending


def _leading_image_option(text: str) -> tuple[str, str | None]:
    stream = io.StringIO(text.strip())
    lexer = shlex.shlex(stream, posix=True)  # reads it a character at a time
    lexer.whitespace_split = True
    kept: list[str] = []
    try:
        # Only options are lexed: the prompt after them may hold an apostrophe ("what's").
        while _option_next(stream) and (word := lexer.get_token()) is not None:
            if word == "--image":
                path = lexer.get_token()
                if path is None:
                    break
                return _joined(kept, stream.read().strip()), path
            if word.startswith("--image="):
                return _joined(kept, stream.read().strip()), word.partition("=")[2]
            kept.append(word)
            if "=" not in word:  # the option's value
                value = lexer.get_token()
                if value is not None:
                    kept.append(value)
    except ValueError as exc:
        raise UserError(f'{exc}: quote a path with spaces as "my file.png".') from None
    return text, None


def _option_next(stream: io.StringIO) -> bool:
    return stream.getvalue()[stream.tell() :].lstrip().startswith("--")


def _joined(options: list[str], rest: str) -> str:
    return " ".join([shlex.join(options), rest] if options else [rest]).strip()


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


def _line_editing() -> bool:
    """Turn on line editing and history for `input` (readline); False where there is none.
    Imported only at a terminal: some readline builds write escape codes when imported."""
    try:
        import readline  # noqa: F401
    except ImportError:
        return False
    return True


async def _read_line(prompt: str) -> str | None:
    """`input(prompt)` (readline edits the line) in a daemon thread, so Ctrl-C can end the
    program while it waits: a thread of the default executor would be waited for at exit, until
    someone pressed Enter. None at Ctrl-D."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str | None] = loop.create_future()

    def settle(outcome: Any, failed: bool) -> None:
        if not done.done():
            done.set_exception(outcome) if failed else done.set_result(outcome)

    def read() -> None:
        try:
            line: str | None = input(prompt)
        except EOFError:
            line = None
        except Exception as exc:
            loop.call_soon_threadsafe(settle, exc, True)
            return
        loop.call_soon_threadsafe(settle, line, False)

    threading.Thread(target=read, name="console-input", daemon=True).start()
    return await done


@contextlib.contextmanager
def _terminal_restored(stdin: TextIO) -> Any:
    """Put the terminal back as it was: Ctrl-C may end the program while readline holds the
    terminal in its own mode (no echo, key by key)."""
    try:
        import termios

        fd = stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

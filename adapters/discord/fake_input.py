"""Typing into the fake Discord (`python -m adapters.discord.fake`): each line becomes what a
person in #general would send. `/name text --option value` is a slash command (an
INTERACTION_CREATE, its options read from the commands the bot synced); `!good`, `!bad` and
`!stop` click that button on the newest message that has it; any other line is a message that
mentions the bot. The person typing owns the test server, so admin commands work.
"""

from __future__ import annotations

import asyncio
import mimetypes
import sys
import threading
from pathlib import Path
from typing import Any

from adapters.discord.fake import MANAGE_GUILD, FakeDiscord, JSONDict, buttons_of

#: The server's owner in the fake (`guild_payload`), so Manage Server holds for messages too.
PERSON_ID = 1
PERSON_NAME = "you"
#: Discord's application command option types (docs: interactions/application-commands).
STRING, INTEGER, BOOLEAN, ATTACHMENT = 3, 4, 5, 11
#: Typed clicks: the start of the custom_id of the button each one clicks.
CLICKS = {
    "!good": "tokbot:feedback:positive:",
    "!bad": "tokbot:feedback:negative:",
    "!stop": "tokbot:stop:",
}


class LineError(Exception):
    """A typed line that cannot be sent; the text says why."""


async def relay_stdin(fake: FakeDiscord) -> None:
    """Send each line typed on stdin to the bot until Ctrl-C; empty lines are skipped, and the
    fake keeps serving after the end of input."""
    print(
        "Type a message for the bot, or a slash command like `/ask what is tokbot?` "
        "(options as `--name value`; a file option takes a path).",
        flush=True,
    )
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def read() -> None:  # a daemon thread: a blocked read never holds up Ctrl-C
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="fake-discord-stdin", daemon=True).start()
    while (line := await lines.get()) is not None:
        if not line.strip():
            continue
        try:
            await send_line(fake, line.strip())
        except LineError as exc:
            print(f"({exc})", flush=True)
    print("(end of input; still serving the bot, Ctrl-C stops)", flush=True)
    await asyncio.Event().wait()


async def send_line(fake: FakeDiscord, line: str) -> None:
    """Dispatch one typed line to the connected bot."""
    if not fake.bot_connected:
        raise LineError("no bot is connected yet: start `tokbot run` with the values above")
    if line in CLICKS:
        await click(fake, CLICKS[line])
        return
    if not line.startswith("/"):
        await fake.message(
            f"<@{fake.application_id}> {line}",
            user_id=PERSON_ID,
            user_name=PERSON_NAME,
            mention_bot=True,
        )
        return
    name, _, text = line[1:].partition(" ")
    command = fake.command(name)
    if command is None:
        raise LineError(f"the bot has no /{name} command; try /help")
    options, files = slash_options(fake, command, text)
    await fake.interaction(
        name,
        options,
        user_id=PERSON_ID,
        user_name=PERSON_NAME,
        permissions=MANAGE_GUILD,
        attachments=files,
    )


async def click(fake: FakeDiscord, prefix: str) -> None:
    """Click the button whose custom_id starts with `prefix` on the newest message with one."""
    for message in reversed(list(fake.messages.values())):
        for button in buttons_of(message):
            custom_id = str(button.get("custom_id") or "")
            if custom_id.startswith(prefix):
                await fake.click(message.id, custom_id, user_id=PERSON_ID, user_name=PERSON_NAME)
                return
    raise LineError("no message has that button (yet)")


def slash_options(
    fake: FakeDiscord, command: JSONDict, text: str
) -> tuple[dict[str, Any], dict[str, JSONDict]]:
    """`--name value` for any option (a boolean needs no value, a file option takes a path);
    the other words fill the command's first text option, as Discord's own box would."""
    declared = {o["name"]: o for o in command.get("options", [])}
    options: dict[str, Any] = {}
    files: dict[str, JSONDict] = {}
    rest: list[str] = []
    words = iter(text.split())
    for word in words:
        option = declared.get(word[2:]) if word.startswith("--") else None
        if option is None:
            rest.append(word)
            continue
        kind = option.get("type")
        if kind == BOOLEAN:
            options[option["name"]] = True
            continue
        value = next(words, None)
        if value is None:
            raise LineError(f"--{option['name']} needs a value")
        if kind == ATTACHMENT:
            files[option["name"]] = _attachment(fake, value)
        elif kind == INTEGER:
            options[option["name"]] = int(value) if value.isdigit() else value
        else:
            options[option["name"]] = value
    if rest:
        free = [n for n, o in declared.items() if o.get("type") == STRING and n not in options]
        if not free:
            raise LineError(f"/{command['name']} takes no text; its options: {_names(declared)}")
        options[free[0]] = " ".join(rest)
    missing = [n for n, o in declared.items() if o.get("required") and n not in options | files]
    if missing:
        raise LineError(f"/{command['name']} needs " + ", ".join(f"--{n}" for n in missing))
    return options, files


def _attachment(fake: FakeDiscord, path: str) -> JSONDict:
    file = Path(path).expanduser()
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise LineError(f"can't read {path}: {exc.strerror}") from None
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return fake.attachment(file.name, data, content_type)


def _names(declared: dict[str, JSONDict]) -> str:
    return ", ".join(f"--{name}" for name in declared) or "none"

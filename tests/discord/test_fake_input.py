"""The fake Discord as a person uses it by hand: lines typed into it reach the real bot, and it
prints what the bot sends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

from adapters.discord import DiscordAdapter
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.tokmodel.fake import FakeTokModel
from tests.conftest import API_KEY, STARTUP_SECONDS
from tests.discord.conftest import TOKEN

ROOT = Path(__file__).resolve().parents[2]


class Terminal:
    """The fake's process, typed into and read from as a terminal would be."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self.seen: list[str] = []

    async def until(self, pattern: str, timeout: float = 15.0) -> str:
        """The first line printed from now on that matches `pattern`."""
        async with asyncio.timeout(timeout):
            while True:
                line = (await self._stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"the fake exited; it printed {self.seen}")
                self.seen.append(line)
                if re.search(pattern, line):
                    return line

    async def type(self, line: str) -> None:
        self._stdin.write(line.encode() + b"\n")
        await self._stdin.drain()

    def end_input(self) -> None:
        self._stdin.close()


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_lines_typed_into_the_fake_discord_reach_the_bot(
    make_settings: Callable[..., Settings], fake: FakeTokModel
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.discord.fake", "--port", "0",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        # As a shell starts a job: Ctrl-C's signal at its default. An ignored SIGINT stays
        # ignored across exec, and Python then installs no KeyboardInterrupt (a run of the
        # suite started in the background by a non-interactive shell has it ignored).
        preexec_fn=_sigint_default,
    )  # fmt: skip
    terminal = Terminal(process)
    try:
        started = await terminal.until(r"^Fake Discord at ", STARTUP_SECONDS)
        url = started.split()[-1].rstrip(".")
        settings = make_settings(
            DISCORD_TOKEN=TOKEN,
            DISCORD_API_BASE=url + "/api/v10",
            DISCORD_GATEWAY_URL=url.replace("http://", "ws://") + "/gateway",
            TOKBOT_STREAM_EDIT_INTERVAL="0.05",
        )
        async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
            adapter = DiscordAdapter(core, settings, guild_ready_timeout=0.05)
            await adapter.start()
            try:
                await terminal.type("/ask what is tokbot?")
                await terminal.until(r"\[#general\] tokbot .*You said: «you: what is tokbot\?»")
                await terminal.type("")  # an empty line does not quit
                await terminal.type("hello bot")
                # The answer streams: its first message may hold only the start of it.
                answered = r"\[#general\] tokbot (says|edits): .*You said: «you: hello bot»"
                await terminal.until(answered)
                await terminal.until(r"^  \[👍 tokbot:feedback:positive:\d+\]")
                await terminal.type("!good")  # clicks 👍 under that answer
                await terminal.until(r"tokbot answers \(only you can see this\): 👍 Thanks")
                await terminal.type("!stop")  # no answer is streaming: nothing to click
                await terminal.until(r"\(no message has that button \(yet\)\)")
                await terminal.type("/persona --reset")  # the person typing is an admin
                await terminal.until(r"Persona reset to the default")
                await terminal.type("/help")
                await terminal.until(r"tokbot answers \(only you can see this\): (?!is thinking)")
                await terminal.until(r"/imagine")
                await terminal.type("/nonsense")
                await terminal.until(r"\(the bot has no /nonsense command; try /help\)")
                terminal.end_input()
                await terminal.until(r"end of input; still serving")
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(url + "/api/v10/gateway/bot") as still,
                ):
                    assert still.status == 200
            finally:
                await adapter.stop()
        process.send_signal(signal.SIGINT)  # Ctrl-C stops it, reader thread or not
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

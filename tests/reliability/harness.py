"""Running `tokbot run` as separate processes for the reliability tests.

`ForkedTokbot` runs `adapters.cli.main(["run"])` (what `python -m adapters.cli run` runs) in a
process forked from a multiprocessing fork server that has tokbot imported already: a real,
separate process that can be SIGKILLed or SIGTERMed, without paying ~2 s of imports on each of
the crash test's many restarts. Its output goes to a log file the tests read (for tracebacks and
secrets).

None of them may outlive its test: the fork server keeps running while any process it forked
does (each holds the write end of its "alive" pipe), so one forgotten `tokbot run` kept both
alive for hours after a run. `reap()` (after every reliability test, and at exit) kills what a
failed test left running, and each forked process kills itself when the test process is gone
(a killed xdist worker runs no clean-up)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import multiprocessing
import os
import select
import signal
import socket
import sys
import threading
import time
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path

import aiohttp

from adapters.discord.fake import FakeDiscord
from adapters.slack.fake import FakeSlack
from bot.tokmodel.fake import FakeTokModel
from tests.conftest import API_KEY

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def bot_env(
    slack: FakeSlack, fake: FakeTokModel, database_url: str, home: Path, port: int, **extra: str
) -> dict[str, str]:
    """The environment of a `tokbot run` in Slack HTTP mode against the loopback fakes."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "PYTHONPATH": str(REPO),
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url,
        "TOKMODEL_API_KEY": API_KEY,
        "TOKMODEL_BASE_URL": fake.url,
        "TOKBOT_TOKMODEL_MAX_RETRIES": "0",
        "TOKBOT_TOKMODEL_TIMEOUT": "5",
        "TOKBOT_RATE_LIMIT_PER_MINUTE": "0",
        # Loads beyond one workspace's chat.update limit (tests/slack covers the budget).
        "TOKBOT_SLACK_EDITS_PER_MINUTE": "0",
        "DATABASE_URL": database_url,
        "TOKBOT_HTTP_HOST": "127.0.0.1",
        "TOKBOT_HTTP_PORT": str(port),
        "TOKBOT_WORKERS": "1",  # one process, that the tests can SIGKILL (on PostgreSQL too)
        **extra,
    }


def discord_env(
    discord: FakeDiscord, fake: FakeTokModel, database_url: str, home: Path, port: int, **extra: str
) -> dict[str, str]:
    """The environment of a `tokbot run` with only the Discord adapter, against the fakes."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "PYTHONPATH": str(REPO),
        "DISCORD_TOKEN": discord.token,
        "DISCORD_API_BASE": discord.api_base,
        "DISCORD_GATEWAY_URL": discord.gateway_url,
        "TOKMODEL_API_KEY": API_KEY,
        "TOKMODEL_BASE_URL": fake.url,
        "TOKBOT_TOKMODEL_MAX_RETRIES": "0",
        "TOKBOT_RATE_LIMIT_PER_MINUTE": "0",
        "TOKBOT_STREAM_EDIT_INTERVAL": "0.05",
        "DATABASE_URL": database_url,
        "TOKBOT_HTTP_HOST": "127.0.0.1",
        "TOKBOT_HTTP_PORT": str(port),
        "TOKBOT_WORKERS": "1",
        **extra,
    }


class Tokbot:
    """What both kinds of process share: the port, the log, health."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = int(env["TOKBOT_HTTP_PORT"])

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def returncode(self) -> int | None:
        raise NotImplementedError

    def send(self, signum: int) -> None:
        raise NotImplementedError

    async def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.returncode() is not None:
                    raise AssertionError(f"tokbot exited with {self.returncode()}: {self.logs()}")
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.03)
        raise AssertionError(f"tokbot never became healthy: {self.logs()}")

    async def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while (code := self.returncode()) is None:
            if time.monotonic() > deadline:
                self.send(signal.SIGKILL)
                raise AssertionError(f"tokbot did not exit within {timeout} s")
            await asyncio.sleep(0.02)
        return code

    async def kill(self) -> None:
        self.send(signal.SIGKILL)
        assert await self.wait_exit(5) == -signal.SIGKILL

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then the exit code."""
        if self.returncode() is None:
            self.send(signal.SIGTERM)
        return await self.wait_exit(timeout)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


_context: ForkServerContext | None = None


def _fork_server() -> ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["adapters.cli", "adapters.slack", __name__])
    return _context


def _serve(env: dict[str, str], log: str, tester: int) -> None:
    """The forked process: `tokbot run` with `env`, its output to `log`, for as long as the
    test process `tester` lives."""
    threading.Thread(target=_die_with, args=(tester,), daemon=True).start()
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(env["HOME"])
    from adapters.cli import main

    code = main(["run"])
    sys.stdout.flush()
    sys.stderr.flush()
    raise SystemExit(code)


def _die_with(tester: int) -> None:
    """Kill this process once process `tester` has exited (its parent is the fork server, so
    nothing else would tell it)."""
    with contextlib.suppress(OSError):
        watched = os.pidfd_open(tester)  # readable once `tester` exits (Linux 5.3+)
        select.select([watched], [], [])
        os.kill(os.getpid(), signal.SIGKILL)
    while True:  # no pidfd: look every half second
        try:
            os.kill(tester, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.5)


#: Forked processes started and not yet seen to exit.
_running: set[ForkedTokbot] = set()


def reap() -> None:
    """Kill every forked `tokbot run` still running (a test that failed before stopping it)."""
    for bot in list(_running):
        bot.send(signal.SIGKILL)
        bot.join()


atexit.register(reap)


class ForkedTokbot(Tokbot):
    """`adapters.cli.main(["run"])` in a fresh process forked from a pre-imported fork server."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(env, log)
        self._process: BaseProcess | None = None

    def start(self) -> ForkedTokbot:
        self._process = _fork_server().Process(
            target=_serve, args=(self.env, str(self.log), os.getpid())
        )
        self._process.start()
        _running.add(self)
        return self

    def join(self) -> None:
        """Wait for the process to exit (it must be on its way) and release it."""
        if self._process is not None:
            self._process.join(5)
            if self._process.exitcode is not None:
                self._process.close()
                self._process = None
                _running.discard(self)

    def returncode(self) -> int | None:
        assert self._process is not None
        return self._process.exitcode

    def send(self, signum: int) -> None:
        assert self._process is not None and self._process.pid is not None
        if self._process.exitcode is None:
            os.kill(self._process.pid, signum)

    async def wait_exit(self, timeout: float) -> int:
        code = await super().wait_exit(timeout)
        self.join()
        return code

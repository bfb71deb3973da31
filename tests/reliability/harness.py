"""Running `tokbot run` as separate processes for the reliability tests.

`ForkedTokbot` runs `adapters.cli.main(["run"])` (what `python -m adapters.cli run` runs) in a
process forked from a multiprocessing fork server that has tokbot imported already: a real,
separate process that can be SIGKILLed or SIGTERMed, without paying ~2 s of imports on each of
the crash test's many restarts. Its output goes to a log file the tests read (for tracebacks and
secrets)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import sys
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


def _serve(env: dict[str, str], log: str) -> None:
    """The forked process: `tokbot run` with `env`, its output to `log`."""
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


class ForkedTokbot(Tokbot):
    """`adapters.cli.main(["run"])` in a fresh process forked from a pre-imported fork server."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(env, log)
        self._process: BaseProcess | None = None

    def start(self) -> ForkedTokbot:
        self._process = _fork_server().Process(target=_serve, args=(self.env, str(self.log)))
        self._process.start()
        return self

    def returncode(self) -> int | None:
        assert self._process is not None
        return self._process.exitcode

    def send(self, signum: int) -> None:
        assert self._process is not None and self._process.pid is not None
        if self._process.exitcode is None:
            os.kill(self._process.pid, signum)

    async def wait_exit(self, timeout: float) -> int:
        code = await super().wait_exit(timeout)
        assert self._process is not None
        self._process.join(1)
        self._process.close()
        return code

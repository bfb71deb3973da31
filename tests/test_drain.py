"""Shutdown is the same on Slack and Discord: `tokbot run` (a real process, against the loopback
fakes) gives the answers in flight one drain deadline (TOKBOT_DRAIN_SECONDS), then shows them cut
off; a second signal stops at once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.discord.fake import FakeDiscord
from adapters.slack.fake import FakeSlack
from bot.tokmodel.fake import FakeTokModel
from tests.conftest import API_KEY
from tests.discord.conftest import TOKEN, discord_fake  # noqa: F401  (fixture used by name)
from tests.discord.helpers import text_of
from tests.reliability.harness import free_port
from tests.slack.conftest import CHANNEL, slack  # noqa: F401  (fixture used by name)

ROOT = Path(__file__).resolve().parents[1]
SHORT = "finished " * 40  # about 1 s at the chunk delay below
LONG = "endless " * 1000  # about 25 s
CHUNK_DELAY = 0.05
INTERRUPTED = "I was interrupted"
CLOSING_S = 4.0  # after the deadline: the cut-off marks (bounded at 2 s) and disconnecting


@dataclass
class Bot:
    """A `tokbot run` process and what it takes to ask it something on its platform."""

    process: asyncio.subprocess.Process
    log: Path
    database: Path
    ask: Callable[[str], asyncio.Future[Callable[[], str]]]
    wait: Callable[[Callable[[], bool], float], asyncio.Future[None]]

    def send(self, signum: int) -> float:
        self.process.send_signal(signum)
        return time.monotonic()

    async def exited(self, timeout: float) -> int:
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"tokbot did not exit in {timeout} s:\n{self.logs()}") from None

    async def logged(self, text: str, timeout: float = 10.0) -> None:
        """Wait until the log shows `text` (the process writes it; it must come)."""
        deadline = time.monotonic() + timeout
        while text not in self.logs():
            assert time.monotonic() < deadline, f"never logged {text!r}:\n{self.logs()}"
            await asyncio.sleep(0.02)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def answers(self) -> list[tuple[str, str]]:
        with sqlite3.connect(self.database) as db:
            rows = db.execute("select status, content from turns where role = 'assistant'")
            return [(status, content) for status, content in rows]


@pytest.fixture(params=["slack", "discord"])
async def bot(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fake: FakeTokModel,
    slack: FakeSlack,  # noqa: F811
    discord_fake: FakeDiscord,  # noqa: F811
) -> AsyncIterator[Callable[..., asyncio.Future[Bot]]]:
    processes: list[asyncio.subprocess.Process] = []
    fake.chunk_delay = CHUNK_DELAY
    port = free_port()
    database = tmp_path / "drain.db"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "TOKMODEL_API_KEY": API_KEY,
        "TOKMODEL_BASE_URL": fake.url,
        "DATABASE_URL": f"sqlite:///{database}",
        "TOKBOT_HTTP_HOST": "127.0.0.1",
        "TOKBOT_HTTP_PORT": str(port),
        "TOKBOT_WORKERS": "1",  # one process (tests/reliability/test_workers.py: several)
        "TOKBOT_RATE_LIMIT_PER_MINUTE": "0",
        "TOKBOT_TOKMODEL_TIMEOUT": "30",
    }
    if request.param == "slack":
        env |= {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": slack.signing_secret,
            "SLACK_API_URL": slack.api_url,
        }
    else:
        env |= {
            "DISCORD_TOKEN": TOKEN,
            "DISCORD_API_BASE": discord_fake.api_base,
            "DISCORD_GATEWAY_URL": discord_fake.gateway_url,
        }

    async def ask_slack(question: str) -> Callable[[], str]:
        event = slack.message_event(question, mention=True)
        await slack.post_event(f"http://127.0.0.1:{port}/slack/events", slack.event_body(event))
        return lambda: "\n".join(slack.texts(CHANNEL, thread_ts=str(event["ts"])))

    async def ask_discord(question: str) -> Callable[[], str]:
        interaction = await discord_fake.interaction("ask", {"question": question})
        return lambda: text_of(discord_fake.replies_to(interaction))

    async def wait(condition: Callable[[], bool], timeout: float) -> None:
        if request.param == "slack":
            await slack.wait_for(condition, timeout)
        else:
            await discord_fake.wait_for(condition, timeout)

    async def start(drain_seconds: float) -> Bot:
        log = tmp_path / "run.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "adapters.cli", "run",
                cwd=tmp_path,
                env=env | {"TOKBOT_DRAIN_SECONDS": str(drain_seconds)},
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        processes.append(process)
        started = Bot(
            process,
            log,
            database,
            ask_slack if request.param == "slack" else ask_discord,  # type: ignore[arg-type]
            wait,  # type: ignore[arg-type]
        )
        await started.logged("tokbot is running", timeout=30)
        return started

    try:
        yield start  # type: ignore[misc]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_answers_in_flight_finish_within_the_drain(
    bot: Callable[..., asyncio.Future[Bot]], fake: FakeTokModel
) -> None:
    running = await bot(drain_seconds=20)
    fake.set_reply(SHORT)
    shown = await running.ask("take your time")
    await running.wait(lambda: "finished" in shown(), 10)
    running.send(signal.SIGTERM)
    assert await running.exited(20) == 0
    assert shown().strip() == SHORT.strip()
    assert [status for status, _ in running.answers()] == ["ok"]
    assert "Traceback" not in running.logs()


async def test_answers_still_running_at_the_deadline_are_cut_off(
    bot: Callable[..., asyncio.Future[Bot]], fake: FakeTokModel
) -> None:
    running = await bot(drain_seconds=1)
    fake.set_reply(LONG)
    shown = await running.ask("a long one")
    await running.wait(lambda: "endless" in shown(), 10)
    stopping = running.send(signal.SIGTERM)
    assert await running.exited(1 + CLOSING_S + 5) == 0
    took = time.monotonic() - stopping
    assert 1 <= took < 1 + CLOSING_S, f"stopped after {took:.1f} s"
    assert INTERRUPTED in shown() and shown().startswith("endless")
    [(status, content)] = running.answers()
    assert status == "interrupted" and content.startswith("endless")
    assert "Traceback" not in running.logs()


async def test_a_second_signal_stops_at_once(
    bot: Callable[..., asyncio.Future[Bot]], fake: FakeTokModel
) -> None:
    running = await bot(drain_seconds=60)
    fake.set_reply(LONG)
    shown = await running.ask("a long one")
    await running.wait(lambda: "endless" in shown(), 10)
    running.send(signal.SIGTERM)
    await running.logged("Ctrl-C again stops at once")
    again = running.send(signal.SIGINT)
    assert await running.exited(CLOSING_S + 10) == 0
    took = time.monotonic() - again
    assert took < CLOSING_S, f"stopped {took:.1f} s after the second signal"
    assert INTERRUPTED in shown()
    [(status, _)] = running.answers()
    assert status == "interrupted"
    assert "Traceback" not in running.logs()

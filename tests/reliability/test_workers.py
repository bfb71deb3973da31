"""`tokbot run --workers 2` as an operator runs it: a real supervisor process and its two
workers, against the loopback fake Slack (HTTP mode, every POST on a new connection) or fake
Discord and the TokModel stand-in, on SQLite and PostgreSQL. Events spread across both workers
(SO_REUSEPORT), each is answered once (Slack's retries reach either worker), a worker killed is
restarted, workers never outlive a killed supervisor, /metrics counts every worker's events,
Discord's shards are dealt out, and SIGTERM stops them all after their answers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.discord.fake import FakeDiscord
from adapters.slack.app import _share
from adapters.slack.fake import FakeSlack
from adapters.workers import WorkerSlot, available_cpus, default_workers
from bot.metrics import MULTIPROCESS_DIR
from bot.settings import Settings, load_settings
from bot.tokmodel.fake import FakeTokModel
from tests.reliability.conftest import Figures
from tests.reliability.harness import bot_env, discord_env, free_port

CHANNELS = 12
RUNNING = re.compile(r"tokbot worker (\d+)/2 is running \([a-z, ]+\), pid (\d+)")


@dataclass
class Supervisor:
    process: asyncio.subprocess.Process
    log: Path
    port: int

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def workers(self) -> dict[int, list[int]]:
        """Each worker's pids, in the order they started."""
        started: dict[int, list[int]] = {}
        for index, pid in RUNNING.findall(self.logs()):
            started.setdefault(int(index), []).append(int(pid))
        return started

    async def logged(self, pattern: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until the log shows `pattern` `count` times (the processes write it)."""
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.logs())) < count:
            assert self.process.returncode is None, f"tokbot exited:\n{self.logs()}"
            assert time.monotonic() < deadline, f"never logged {pattern!r}:\n{self.logs()}"
            await asyncio.sleep(0.02)

    async def stop(self, timeout: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"tokbot did not stop in {timeout} s:\n{self.logs()}") from None


@asynccontextmanager
async def run_workers(env: dict[str, str], tmp_path: Path) -> AsyncIterator[Supervisor]:
    """`tokbot run --workers 2` with `env`, once both workers run; afterwards no process of it
    is left (the supervisor killed: its workers see their stdin end and stop too)."""
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "adapters.cli", "run", "--workers", "2",
            cwd=tmp_path, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    running = Supervisor(process, log, int(env["TOKBOT_HTTP_PORT"]))
    try:
        # Two processes importing everything at once on a shared machine, then the second
        # waits a heartbeat and a half beside the first (bot/inbox: Inbox.start).
        await running.logged("tokbot is running in 2 workers", timeout=90)
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pids in running.workers().values():
            for pid in pids:
                await _gone(pid)


@pytest.fixture
async def supervisor(
    slack: FakeSlack, fake: FakeTokModel, database_url: str, tmp_path: Path
) -> AsyncIterator[Supervisor]:
    # Metrics files kept where the test can read each worker's own (the supervisor removes
    # only a directory it made).
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    env = bot_env(
        slack,
        fake,
        database_url,
        tmp_path,
        free_port(),
        TOKBOT_STALE_ANSWER_SECONDS="60",
        **{MULTIPROCESS_DIR: str(metrics)},
    )
    async with run_workers(env, tmp_path) as running:
        yield running


async def _gone(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"worker {pid} outlived its supervisor")
        await asyncio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def _received(env_dir: Path, pid: int) -> float:
    """The Slack events worker `pid` counted itself: its own file of prometheus_client's
    multiprocess mode (counter_<pid>.db, which stays after it exits)."""
    files = [str(env_dir / f"counter_{pid}.db")]
    for metric in MultiProcessCollector.merge(files):  # type: ignore[no-untyped-call]
        for sample in metric.samples:
            if sample.name == "tokbot_platform_events_total":
                return float(sample.value)
    return 0.0


async def _inbox(database_url: str) -> list[tuple[str, str]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT owner, state FROM inbox"))
            return [(owner, state) for owner, state in rows]
    finally:
        await engine.dispose()


async def test_two_workers_share_the_events_and_answer_each_once(
    supervisor: Supervisor,
    slack: FakeSlack,
    fake: FakeTokModel,
    database_url: str,
    tmp_path: Path,
    reliability: Figures,
) -> None:
    pids = {index: started[0] for index, started in supervisor.workers().items()}
    assert sorted(pids) == [0, 1]
    bodies = [
        slack.event_body(slack.message_event(f"question {n}", mention=True, channel=f"C0W{n:03d}"))
        for n in range(CHANNELS)
    ]
    # Each event twice at once, as Slack's retry of a slow ack: any worker may get either.
    sent = await asyncio.gather(
        *(slack.post_event(supervisor.events_url, body) for body in bodies),
        *(slack.post_event(supervisor.events_url, body, retry_num=1) for body in bodies),
    )
    assert [status for status, _ in sent] == [200] * 2 * CHANNELS
    threads = [(str(b["event"]["channel"]), str(b["event"]["ts"])) for b in bodies]  # type: ignore[index]
    await slack.wait_for(lambda: all(slack.texts(c, thread_ts=ts) for c, ts in threads), 30)
    # /metrics from whichever worker takes each new connection: every worker's events, summed.
    counted = f'tokbot_platform_events_total{{platform="slack"}} {2 * CHANNELS}.0'
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _ in range(6):
            async with http.get(f"http://127.0.0.1:{supervisor.port}/metrics") as response:
                page = await response.text()
            assert counted in page, page

    assert await supervisor.stop() == 0, supervisor.logs()
    # Once every process has exited, nothing more can be answered: count.
    assert [len(slack.texts(c, thread_ts=ts)) for c, ts in threads] == [1] * CHANNELS
    asked = [r for r in fake.requests if r.path.endswith("/chat/completions")]
    assert len(asked) == CHANNELS
    inbox = await _inbox(database_url)
    assert len(inbox) == CHANNELS and {state for _, state in inbox} == {"done"}
    owners = {owner.split("-")[-2] for owner, _ in inbox}  # host-pid-token: the pids
    received = {pid: _received(tmp_path / "metrics", pid) for pid in pids.values()}
    answered = [len(slack.texts(c, thread_ts=ts)) for c, ts in threads]
    reliability.record(
        "workers",
        f"`tokbot run --workers 2` (Slack HTTP, one port): {CHANNELS} mentions, each POSTed "
        "twice at once (a retry), every POST on a new connection",
        f"{sum(n == 1 for n in answered)}/{CHANNELS} answered exactly once; the POSTs "
        f"received {'/'.join(str(int(n)) for n in received.values())} by the 2 workers, the "
        f"events claimed by {len(owners)} of them; /metrics the same from either",
        events=CHANNELS,
        answered_once=sum(n == 1 for n in answered),
        workers_used=sum(n > 0 for n in received.values()),
    )
    # Both workers received POSTs (the kernel spread the connections), as each counted itself.
    # Not that both claimed events (own inbox rows): of an event both got a copy of, the one
    # that stores it first claims it, and on SQLite the worker holding the write lock stores
    # its whole batch (a group commit) while the other's busy handler sleeps. Measured under
    # load: a worker that received 13 of the 24 POSTs claimed 2 of the 12 events; one worker
    # claiming all 12 is then a few percent likely, and no fault.
    assert sum(received.values()) == 2 * CHANNELS, received
    assert all(received.values()), f"one worker received every POST: {received}"
    assert "Traceback" not in supervisor.logs()


async def test_socket_mode_workers_each_hold_a_connection(
    slack: FakeSlack,
    fake: FakeTokModel,
    database_url: str,
    tmp_path: Path,
    reliability: Figures,
) -> None:
    """Socket Mode: each worker opens its own connection; events come over either, each is
    answered by the worker it reached, and a retry over the other connection is not answered
    again."""
    env = bot_env(slack, fake, database_url, tmp_path, free_port(), SLACK_APP_TOKEN=slack.app_token)
    async with run_workers(env, tmp_path) as supervisor:
        await slack.wait_for(lambda: slack.connections == 2)
        bodies = [
            slack.event_body(slack.message_event(f"socket {n}", mention=True, channel=f"C0S{n}"))
            for n in range(6)
        ]
        threads = [(str(b["event"]["channel"]), str(b["event"]["ts"])) for b in bodies]  # type: ignore[index]
        for n, body in enumerate(bodies):
            await slack.send_envelope("events_api", body, connection=n % 2)
        await slack.wait_for(lambda: all(slack.texts(c, thread_ts=ts) for c, ts in threads), 30)
        # Slack's retries, each over the other connection: recognised there, not answered.
        retries = [
            await slack.send_envelope("events_api", body, retry_attempt=1, connection=(n + 1) % 2)
            for n, body in enumerate(bodies)
        ]
        await slack.wait_for(lambda: all(e in slack.acks for e in retries), 20)
        assert await supervisor.stop() == 0, supervisor.logs()
    answered = [len(slack.texts(c, thread_ts=ts)) for c, ts in threads]
    owners = {owner.split("-")[-2] for owner, _ in await _inbox(database_url)}
    reliability.record(
        "workers",
        "`tokbot run --workers 2` in Slack Socket Mode: 6 mentions over the 2 workers' "
        "connections in turn, then each again (a retry) over the other connection",
        f"2 connections; {sum(n == 1 for n in answered)}/6 answered exactly once; taken by "
        f"{len(owners)} of 2 workers",
    )
    assert answered == [1] * 6
    assert len(owners) == 2


async def test_a_worker_killed_mid_answer_loses_nothing_and_is_restarted(
    slack: FakeSlack,
    fake: FakeTokModel,
    database_url: str,
    tmp_path: Path,
    reliability: Figures,
) -> None:
    """SIGKILL the worker that acknowledged a mention and is asking TokModel: the mention is
    answered once (by its sibling or its restart, after the lease); the worker is restarted;
    and once the supervisor itself is SIGKILLed, the workers stop by themselves."""
    env = bot_env(
        slack,
        fake,
        database_url,
        tmp_path,
        free_port(),
        TOKBOT_STALE_ANSWER_SECONDS="60",
        TOKBOT_PROCESS_LEASE_SECONDS="3",
    )
    async with run_workers(env, tmp_path) as supervisor:
        fake.latency = 30  # TokModel is slow: acknowledged, asked, nothing shown yet
        event = slack.message_event("asked before the crash", mention=True)
        await slack.post_event(supervisor.events_url, slack.event_body(event))
        await slack.wait_for(lambda: any(r.path.endswith("/completions") for r in fake.requests))
        [(owner, _)] = await _inbox(database_url)
        victim = int(owner.split("-")[-2])
        [index] = [i for i, pids in supervisor.workers().items() if pids[0] == victim]
        fake.latency = 0.0
        os.kill(victim, signal.SIGKILL)
        await supervisor.logged(
            rf"worker {index} \(pid {victim}\) exited unexpectedly \(killed by SIGKILL\)"
        )
        await supervisor.logged(RUNNING.pattern.replace(r"(\d+)/2", f"{index}/2"), count=2)
        [first, again] = supervisor.workers()[index]
        assert first == victim and again != victim
        thread = str(event["ts"])
        await slack.wait_for(lambda: bool(slack.texts("C0GENERAL", thread_ts=thread)), 30)
        # Both workers answer on the shared port again: /healthz from whichever takes it.
        async with aiohttp.ClientSession() as http:
            for _ in range(4):
                async with http.get(f"http://127.0.0.1:{supervisor.port}/healthz") as response:
                    assert response.status == 200
        # The supervisor killed outright: its workers see their stdin end and stop by themselves.
        supervisor.process.kill()
        await supervisor.process.wait()
        for pid in (supervisor.workers()[1 - index][0], again):
            await _gone(pid)
    answers = slack.texts("C0GENERAL", thread_ts=thread)
    reliability.record(
        "workers",
        "SIGKILL the worker (of 2) that acknowledged a mention and is asking TokModel; then "
        "SIGKILL the supervisor",
        f"the mention answered {len(answers)} time(s) after the kill; the worker restarted; "
        "both workers stopped by themselves after the supervisor died",
        answers=len(answers),
    )
    assert len(answers) == 1, answers


async def test_discord_shards_are_dealt_out_to_the_workers(
    fake: FakeTokModel, database_url: str, tmp_path: Path, reliability: Figures
) -> None:
    """Discord recommends 2 shards: each worker connects one, and a mention (on the guild's
    shard) and a DM (always shard 0) are each answered once."""
    discord = FakeDiscord(shards=2)
    await discord.start()
    try:
        env = discord_env(discord, fake, database_url, tmp_path, free_port())
        async with run_workers(env, tmp_path) as supervisor:
            assert sorted(i["shard"] for i in discord.identified) == [[0, 2], [1, 2]]
            assert len(re.findall(r"is running \(discord\)", supervisor.logs())) == 2
            in_guild = await discord.message("in the guild", mention_bot=True)
            in_dm = await discord.message("in a DM", dm=True)

            def answers(message: dict[str, object]) -> list[str]:
                return [
                    m.content
                    for m in discord.in_channel(str(message["channel_id"]))
                    if m.reply_to == message["id"]
                ]

            await discord.wait_for(lambda: bool(answers(in_guild) and answers(in_dm)), 20)
            assert await supervisor.stop() == 0, supervisor.logs()
        reliability.record(
            "workers",
            "`tokbot run --workers 2` on Discord (2 shards recommended): a guild mention, a DM",
            f"one shard per worker; answered {len(answers(in_guild))} and "
            f"{len(answers(in_dm))} time(s)",
        )
        assert len(answers(in_guild)) == 1 and len(answers(in_dm)) == 1
    finally:
        await discord.stop()


def _settings(**env: str) -> Settings:
    return load_settings({"TOKMODEL_API_KEY": "k", **env})


def test_the_default_is_one_worker_per_cpu_and_at_most_two_on_sqlite() -> None:
    cpus = available_cpus()
    postgres = "postgresql+asyncpg://tokbot@db/tokbot"
    assert default_workers(_settings(DATABASE_URL=postgres)) == cpus
    assert default_workers(_settings(DATABASE_URL="sqlite:///x.db")) == min(cpus, 2)
    assert default_workers(_settings(DATABASE_URL=postgres, TOKBOT_WORKERS="3")) == 3


def test_shards_are_dealt_out_in_turn() -> None:
    settings = _settings(DISCORD_TOKEN="t", DISCORD_SHARD_COUNT="5")
    assert [WorkerSlot(i, 2).discord_shards(settings) for i in range(2)] == [[0, 2, 4], [1, 3]]
    named = _settings(DISCORD_TOKEN="t", DISCORD_SHARD_COUNT="8", DISCORD_SHARD_IDS="4,5,6")
    assert [WorkerSlot(i, 2).discord_shards(named) for i in range(2)] == [[4, 6], [5]]
    assert WorkerSlot.parse("1/3") == WorkerSlot(1, 3)
    with pytest.raises(ValueError):
        WorkerSlot.parse("3/3")


def test_each_worker_keeps_its_share_of_slacks_per_workspace_rates() -> None:
    assert [_share(50, 2), _share(100, 3), _share(1, 4), _share(0, 2)] == [25, 33, 1, 0]

"""`tokbot run --workers N` measured from outside: the burst of Slack mentions of
`mention_figures.mention_burst` (both events of each, every POST on a new connection, sent by
`bench.mention_load` in its own process), answered by a real `tokbot run` with 1 and with 2
workers, interleaved (1, 2, 1, 2, …) so the machine's drift hits both alike; on SQLite, and on
PostgreSQL too when TOKBOT_BENCH_POSTGRES_URL names a database (its tables are replaced).

All answered: from the burst's first POST to the last answer's final text (the chat.* call that
carries its feedback buttons) at the fake Slack, which runs in this process; ÷ the same TokModel
calls made at once directly (200 ms stand-in latency). CPU per mention: the bot's processes'
user + system time over the burst (/proc), divided by the mentions."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.slack.blocks import FEEDBACK_ACTION
from adapters.slack.fake import FakeSlack, person_id
from bench.adapter_figures import SLACK_DEFAULTS
from bench.core_figures import direct_call
from bench.harness import (
    BENCH_KEY,
    Figure,
    bench_core,
    free_port,
    median,
    percentile,
    reset_postgres,
    stand_in,
)
from bot.core import Core

WORKER_PID = re.compile(rb"tokbot worker \d+/\d+ is running .*, pid (\d+)")
FINAL_METHODS = ("chat.stopStream", "chat.update", "chat.postMessage")


@dataclass
class _Run:
    """One burst's figures."""

    answered: float  # seconds, first POST to the last final text
    direct: float  # seconds, the same calls made directly (measured just before)
    acks: list[float]  # seconds
    cpu: float  # the bot's CPU seconds over the burst
    failed: int


@dataclass
class _Series:
    runs: list[_Run] = field(default_factory=list)

    def ratio(self) -> float:
        return median([r.answered / r.direct for r in self.runs])


async def workers_burst(
    count: int, workers: Sequence[int] = (1, 2), rounds: int = 2
) -> list[Figure]:
    """`count` mentions at once against `tokbot run --workers N` for each N, `rounds` times."""
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as folder:
        databases = [("SQLite", f"sqlite+aiosqlite:///{Path(folder) / 'workers.db'}")]
        postgres = os.environ.get("TOKBOT_BENCH_POSTGRES_URL")
        if postgres:
            await reset_postgres(postgres)
            databases.append(("PostgreSQL", postgres))
        for engine, database_url in databases:
            series = await _measure(count, workers, rounds, database_url)
            figures += _figures(count, engine, series)
    return figures


async def _measure(
    count: int, workers: Sequence[int], rounds: int, database_url: str
) -> dict[int, _Series]:
    series = {n: _Series() for n in workers}
    slack = FakeSlack()
    slack.update_limit = slack.append_limit = None
    for n in range(count):
        slack.add_user(person_id(n), f"person {n}")
    await slack.start()
    try:
        async with stand_in() as tokmodel, bench_core(tokmodel.url) as core:
            await tokmodel.set_latency(0.2)
            for round_ in range(rounds):
                for n in workers:
                    async with _tokbot_run(n, tokmodel.url, slack, database_url) as bot:
                        await _burst(slack, bot, 4, f"C0W{round_}{n}")  # warm every worker
                        direct = await _direct_burst(core, count)
                        run = await _burst(slack, bot, count, f"C0B{round_}{n}")
                        run.direct = direct
                        series[n].runs.append(run)
    finally:
        await slack.stop()
    return series


def _figures(count: int, engine: str, series: dict[int, _Series]) -> list[Figure]:
    figures = []
    for n, measured in series.items():
        runs = measured.runs
        acks = [ack for run in runs for ack in run.acks]
        cpu_ms = median([run.cpu / count * 1000 for run in runs])
        answered = ", ".join(f"{r.answered:.2f} s ÷ {r.direct:.2f} s" for r in runs)
        failed = sum(run.failed for run in runs)
        figures.append(
            Figure(
                f"{count} Slack mentions at once, `tokbot run --workers {n}`, {engine}: "
                "all answered ÷ direct",
                f"{measured.ratio():.2f} ({answered}; ack p50 {median(acks) * 1000:.0f} ms, "
                f"p99 {percentile(acks, 99) * 1000:.0f} ms; CPU {cpu_ms:.1f} ms per mention; "
                f"{failed} failed)",
                "<= 2",
                measured.ratio() <= 2 and failed == 0,
            )
        )
    if len(series) > 1:
        [(one, first), *rest] = series.items()
        for n, other in rest:
            figures.append(
                Figure(
                    f"{n} workers ÷ {one}, {engine}: all answered ÷ direct (< 1: faster)",
                    f"{other.ratio() / first.ratio():.2f}",
                    "-",
                    None,
                )
            )
    return figures


@dataclass
class _Bot:
    process: asyncio.subprocess.Process
    events_url: str
    pids: list[int]

    def cpu_seconds(self) -> float:
        """User + system CPU of the bot's processes so far (the workers', or the one's)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (proc(5))
        return total / ticks


@asynccontextmanager
async def _tokbot_run(
    workers: int, tokmodel_url: str, slack: FakeSlack, database_url: str
) -> AsyncIterator[_Bot]:
    port = free_port()
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": SLACK_DEFAULTS.bot_token,
        "SLACK_SIGNING_SECRET": SLACK_DEFAULTS.signing_secret,
        "SLACK_API_URL": slack.api_url,
        "TOKMODEL_API_KEY": BENCH_KEY,
        "TOKMODEL_BASE_URL": tokmodel_url,
        "DATABASE_URL": database_url,
        "TOKBOT_HTTP_HOST": "127.0.0.1",
        "TOKBOT_HTTP_PORT": str(port),
        "TOKBOT_RATE_LIMIT_PER_MINUTE": "0",
        "TOKBOT_SLACK_EDITS_PER_MINUTE": "0",  # beyond one workspace's limit on purpose
        "TOKBOT_STALE_ANSWER_SECONDS": "300",
        "TOKBOT_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", "run", "--workers", str(workers),
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    pids: list[int] = []
    try:
        while True:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
            if not line:
                raise RuntimeError(f"tokbot run --workers {workers} exited before it ran")
            if found := WORKER_PID.search(line):
                pids.append(int(found.group(1)))
            if line.startswith(b"tokbot is running"):
                break
        yield _Bot(process, f"http://127.0.0.1:{port}/slack/events", pids or [process.pid])
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), timeout=60)


async def _direct_burst(core: Core, count: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(direct_call(core) for _ in range(count)))
    return time.perf_counter() - started


async def _burst(slack: FakeSlack, bot: _Bot, count: int, prefix: str) -> _Run:
    """Send the burst from another process; wait until every channel has its final text."""
    channels = {f"{prefix}{n:05d}" for n in range(count)}
    seen = len(slack.calls)
    cpu = bot.cpu_seconds()
    sender = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.mention_load", "--url", bot.events_url,
        "--count", str(count), "--secret", SLACK_DEFAULTS.signing_secret,
        "--team", SLACK_DEFAULTS.team_id, "--prefix", prefix, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    waiting = asyncio.create_task(_answered(slack, channels, seen))
    out, _ = await sender.communicate()
    if sender.returncode != 0:
        waiting.cancel()
        raise RuntimeError(f"the mention sender failed ({sender.returncode})")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    last = await asyncio.wait_for(waiting, timeout=120)
    return _Run(
        answered=last - float(result["began"]),
        direct=0.0,
        acks=[ms / 1000 for ms in result["latencies_ms"]],
        cpu=bot.cpu_seconds() - cpu,
        failed=int(result["failed"]),
    )


async def _answered(slack: FakeSlack, channels: set[str], seen: int) -> float:
    """The monotonic time of the last final text (its feedback buttons) among `channels`."""
    left = set(channels)
    last = 0.0
    while left:
        calls = slack.calls[seen:]
        seen += len(calls)
        for call in calls:
            channel = str(call.args.get("channel"))
            if call.method in FINAL_METHODS and channel in left:
                if FEEDBACK_ACTION in json.dumps(call.args.get("blocks") or ""):
                    left.discard(channel)
                    last = max(last, call.time)
        await asyncio.sleep(0.005)
    return last

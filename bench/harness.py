"""Shared parts: the TokModel stand-in in its own process (so it never shares the bot's event
loop or memory), a core on a fresh SQLite file, a replier that timestamps what users would see,
and the figure type the report prints."""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
from asyncpg.prepared_stmt import PreparedStatement  # type: ignore[import-untyped]
from sqlalchemy import text

from bot.core import Core
from bot.domain import AnswerControls, Attachment, OutgoingFile, PlatformHelp
from bot.runtime import TokModelEndpoint, open_core, settle_gc
from bot.settings import Settings, load_settings
from bot.store import Store

BENCH_KEY = "bench-key"


@dataclass(frozen=True)
class Figure:
    name: str
    measured: str
    target: str
    ok: bool | None  # None: informational


@dataclass
class StandIn:
    url: str
    http: aiohttp.ClientSession

    async def set_latency(self, seconds: float) -> None:
        """Every request waits `seconds` before TokModel's answer starts."""
        async with self.http.delete(f"{self.url}/_fake/faults"):
            pass
        if seconds > 0:
            fault = {"delay": seconds, "times": -1}
            async with self.http.post(f"{self.url}/_fake/faults", json=fault) as response:
                response.raise_for_status()

    async def forget_requests(self) -> None:
        async with self.http.delete(f"{self.url}/_fake/requests"):
            pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Shared:
    stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    running: dict[float, StandIn] = field(default_factory=dict)


_shared: list[_Shared] = []


@asynccontextmanager
async def shared_stand_ins() -> AsyncIterator[None]:
    """Within this, `stand_in` starts one process per chunk delay and hands it out again (with
    no latency and no recorded requests): each start costs a second and a half of the run."""
    shared = _Shared()
    _shared.append(shared)
    try:
        async with shared.stack:
            yield
    finally:
        _shared.remove(shared)


@asynccontextmanager
async def stand_in(chunk_delay: float = 0.0) -> AsyncIterator[StandIn]:
    """The TokModel stand-in in its own process (shared, within `shared_stand_ins`)."""
    if not _shared:
        async with _stand_in_process(chunk_delay) as started:
            yield started
        return
    shared = _shared[-1]
    running = shared.running.get(chunk_delay)
    if running is None:
        running = await shared.stack.enter_async_context(_stand_in_process(chunk_delay))
        shared.running[chunk_delay] = running
    await running.set_latency(0)
    await running.forget_requests()
    yield running


@asynccontextmanager
async def _stand_in_process(chunk_delay: float) -> AsyncIterator[StandIn]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", "fake-tokmodel", "--port", str(port),
        "--api-key", BENCH_KEY, "--chunk-delay", str(chunk_delay),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "TOKBOT_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        await asyncio.wait_for(process.stdout.readline(), timeout=30)
        async with aiohttp.ClientSession() as http:
            yield StandIn(f"http://127.0.0.1:{port}", http)
    finally:
        process.terminate()
        await process.wait()


@asynccontextmanager
async def child_process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python *args` with pipes to its stdin and stdout; at the end its stdin is closed (its
    sign to stop) and it gets 10 s to exit before it is killed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


#: What each process the bench starts is, by the module it runs (see `ProcessCpu`).
_PROCESS_NAMES = {
    "adapters.cli": "TokModel stand-in",
    "adapters.slack.fake": "fake Slack",
    "adapters.discord.fake": "fake Discord",
    "bench.discord_load": "fake Discord (+ its sender)",
    "bench.mention_load": "load generator",
    "bench.slack_load": "load generator",
}


class ProcessCpu:
    """CPU seconds (user + system, from /proc) spent by this process and by each process it
    started, over a `with` block: on a machine whose CPUs are all busy, a burst's wall time is
    at least the sum of everyone's CPU ÷ the CPUs, whoever spends it. A process that ends
    inside the block is not counted (it reports its own: e.g. `bench.mention_load`)."""

    def __enter__(self) -> ProcessCpu:
        self._before = _cpu_by_process()
        self.spent: dict[str, float] = {}
        return self

    def __exit__(self, *_: object) -> None:
        after = _cpu_by_process()
        for pid, (name, seconds) in after.items():
            spent = seconds - self._before.get(pid, (name, 0.0))[1]
            self.spent[name] = self.spent.get(name, 0.0) + spent

    def summary(self, wall: float, extra: dict[str, float] | None = None) -> str:
        """Each process's CPU, their sum ÷ the machine's CPUs against `wall`."""
        spent = self.spent | (extra or {})
        cpus = os.cpu_count() or 1
        parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in spent.items())
        floor = sum(spent.values()) / cpus
        return f"{parts}; their sum ÷ {cpus} CPUs {floor:.2f} s, against {wall:.2f} s of wall"


def _cpu_by_process() -> dict[int, tuple[str, float]]:
    """This process and its descendants: pid -> (what it is, CPU seconds so far)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # (ended meanwhile)
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    me = os.getpid()
    found = {me: ("bot (+ the bench's direct client)", cpu.get(me, 0.0))}
    for pid in sorted(parents):
        ancestor = parents[pid]
        while ancestor not in (0, 1, me):
            ancestor = parents.get(ancestor, 0)
        if ancestor == me and pid != me:
            found[pid] = (_process_name(pid), cpu[pid])
    return found


def _process_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return f"process {pid}"
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else Path(argv[0]).name
    return _PROCESS_NAMES.get(module, module)


def bench_settings(url: str, database_url: str, **extra: str) -> Settings:
    env = {
        "TOKMODEL_API_KEY": BENCH_KEY,
        "TOKMODEL_BASE_URL": url,
        "DATABASE_URL": database_url,
        "TOKBOT_RATE_LIMIT_PER_MINUTE": "0",
        "TOKBOT_STREAM_EDIT_INTERVAL": "1.0",
        "TOKBOT_LOG_LEVEL": "WARNING",
        # Each figure measures one thing: the background embedder (on in production) has its
        # own, bench/embedding_figures.py's answer latency while it runs vs idle.
        "TOKBOT_EMBEDDINGS": "off",
    }
    env.update(extra)
    return load_settings(env)


@asynccontextmanager
async def bench_core(url: str, **extra: str) -> AsyncIterator[Core]:
    with tempfile.TemporaryDirectory() as folder:
        database_url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        settings = bench_settings(url, database_url, **extra)
        async with open_core(settings, TokModelEndpoint(url, BENCH_KEY)) as core:
            settle_gc()  # as `tokbot run` does once started (adapters/cli.py)
            yield core


@dataclass
class TimedReplier:
    """Records when the first real text (not the placeholder) became visible, and when the last
    change landed."""

    max_message_length: int = 4000
    edit_interval: float = 1.0
    stream_placeholder: str | None = "…"
    platform_help: PlatformHelp = field(default_factory=PlatformHelp)
    first_text_at: float | None = None
    last_change_at: float | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _seen(self, text: str) -> None:
        now = time.perf_counter()
        if text != self.stream_placeholder and self.first_text_at is None:
            self.first_text_at = now
        self.last_change_at = now

    async def post(
        self, text: str, *, private: bool = False, controls: AnswerControls | None = None
    ) -> str:
        self._seen(text)
        return str(next(self._ids))

    async def edit(
        self, message_id: str, text: str, *, controls: AnswerControls | None = None
    ) -> None:
        self._seen(text)

    async def upload(self, file: OutgoingFile, comment: str | None = None) -> None:
        self._seen(file.filename)

    async def download(self, attachment: Attachment, max_bytes: int) -> bytes:
        raise NotImplementedError


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process, in MB (Linux /proc)."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


async def reset_postgres(url: str) -> None:
    """An empty schema in the bench's PostgreSQL database (earlier runs' rows would pile up)."""
    store = await Store.open(url)
    try:
        async with store.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await store.close()


class AsyncpgTrips:
    """Counts, while entered, the asyncpg calls that each make a round trip to PostgreSQL (a
    statement run, prepared, or a BEGIN/COMMIT/ROLLBACK) and the connections opened: what a
    database path costs, whatever the machine's load (issue 16)."""

    _CALLS = (
        (asyncpg.connection.Connection, ("execute", "prepare", "fetch", "fetchrow", "fetchval")),
        (PreparedStatement, ("fetch", "fetchrow", "fetchval", "executemany")),
    )

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._saved: list[tuple[Any, str, Any]] = []

    @property
    def total(self) -> int:
        return sum(n for what, n in self.counts.items() if what != "connect")

    def summary(self, per: int) -> str:
        return ", ".join(f"{what} {n / per:.1f}" for what, n in self.counts.most_common())

    def __enter__(self) -> AsyncpgTrips:
        for owner, names in self._CALLS:
            for name in names:
                self._wrap(owner, name)
        self._wrap(asyncpg, "connect")
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()

    def _wrap(self, owner: Any, name: str) -> None:
        original = getattr(owner, name)
        counts = self.counts

        async def counted(*args: Any, **kwargs: Any) -> Any:
            query = next((a for a in args if isinstance(a, str)), "")
            word = query.split(None, 1)[0].rstrip(";") if name == "execute" and query else ""
            counts[word or ("connect" if owner is asyncpg else name)] += 1
            return await original(*args, **kwargs)

        self._saved.append((owner, name, original))
        setattr(owner, name, counted)

"""`tokbot run --workers N`: one supervisor process and N worker processes.

The supervisor migrates the database and marks the last run's unfinished answers interrupted
(once, before any worker starts), then runs each worker as `python -m adapters.cli run --worker
I/N`: a whole `tokbot run` of its own (core, adapters, web server). The database coordinates
them exactly as it coordinates replicas (event ids claimed once, one line per conversation,
leases). Per platform:

- Slack over HTTP: every worker binds the same port with SO_REUSEPORT and the kernel spreads
  new connections (each Slack POST is one) across them.
- Slack Socket Mode: each worker opens its own connection; Slack hands each event to one of an
  app's connections, up to 10 of them (api.slack.com/apis/connections/socket-implement).
- Discord: the shards (DISCORD_SHARD_COUNT, else Discord's recommendation) are dealt out
  round-robin; a worker left without one runs without Discord.

The supervisor forwards SIGTERM and SIGINT to every worker (each drains its answers within
TOKBOT_DRAIN_SECONDS; a second signal is forwarded too, and cuts them off), restarts a worker
that dies unexpectedly after a growing pause, and exits once all have stopped. Workers run in
their own process group (a Ctrl-C at the terminal reaches only the supervisor, which forwards
it once) and read their stdin, a pipe from the supervisor: at its end, the supervisor is gone
and they stop as if told to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.metrics import MULTIPROCESS_DIR
from bot.runtime import open_store
from bot.settings import Settings, SettingsError

log = logging.getLogger(__name__)

#: Slack delivers Socket Mode events over at most this many connections of one app.
SOCKET_MODE_CONNECTIONS = 10
#: A worker that ran this long before dying is restarted at once; quicker deaths wait longer
#: each time (RESTART_FIRST_PAUSE, doubling, up to RESTART_MAX_PAUSE).
RESTART_RESET_SECONDS = 60.0
RESTART_FIRST_PAUSE = 0.5
RESTART_MAX_PAUSE = 30.0
#: A worker's exit code for a settings problem (as `tokbot run`'s): restarting cannot fix it.
SETTINGS_EXIT = 2


class StopSignals(Protocol):
    """The first SIGTERM/SIGINT, and a second one (`adapters.cli._Signals`)."""

    first: asyncio.Event
    again: asyncio.Event


@dataclass(frozen=True)
class WorkerSlot:
    """Which worker a `tokbot run --worker I/N` process is (index from 0)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> WorkerSlot:
        index, _, count = text.partition("/")
        slot = cls(int(index), int(count))
        if not 0 <= slot.index < slot.count:
            raise ValueError(text)
        return slot

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def discord_shards(self, settings: Settings) -> list[int]:
        """This worker's share of the shards: every count-th of them, from its index."""
        if settings.discord_shard_count is None:
            raise SettingsError("a worker needs DISCORD_SHARD_COUNT (its supervisor sets it)")
        every = settings.discord_shards or list(range(settings.discord_shard_count))
        return every[self.index :: self.count]


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container
    limited to 2 CPUs on a 64-CPU host gets 2)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    return cpus


#: SQLite's default at most: measured, 2 workers answer a burst faster than 1 (README,
#: Workers); more processes would queue for the one file's write lock, whose busy wait sleeps
#: up to 100 ms at a time, and that was not measured to pay.
SQLITE_DEFAULT_WORKERS = 2


def default_workers(settings: Settings) -> int:
    """TOKBOT_WORKERS when set; otherwise one per CPU, on SQLite at most SQLITE_DEFAULT_WORKERS."""
    if settings.workers is not None:
        return settings.workers
    if settings.database_url.startswith("sqlite"):
        return min(available_cpus(), SQLITE_DEFAULT_WORKERS)
    return available_cpus()


async def supervise(settings: Settings, count: int, signals: StopSignals) -> int:
    """Run `count` workers until a signal stops them; the exit code for `tokbot run`."""
    if settings.http_port == 0:
        raise SettingsError("--workers needs a fixed TOKBOT_HTTP_PORT: the workers share one port")
    count = await _plan(settings, count)
    # Migrations, and the last run's unfinished answers marked, once before any worker.
    async with open_store(settings):
        pass
    env = dict(os.environ)
    if settings.discord_enabled and settings.discord_shard_count is None:
        from adapters.discord.gateway import recommended_shards

        shards = max(await recommended_shards(settings), count)
        env["DISCORD_SHARD_COUNT"] = str(shards)
    shared_metrics = MULTIPROCESS_DIR not in env
    if shared_metrics:
        env[MULTIPROCESS_DIR] = tempfile.mkdtemp(prefix="tokbot-metrics-")
    try:
        return await _Supervisor(count, env, signals).run()
    finally:
        if shared_metrics:
            shutil.rmtree(env[MULTIPROCESS_DIR], ignore_errors=True)


async def _plan(settings: Settings, count: int) -> int:
    """How many workers are worth starting."""
    if settings.slack_enabled and settings.slack_app_token is not None:
        if count > SOCKET_MODE_CONNECTIONS:
            log.warning(
                "Slack's Socket Mode delivers over at most %d connections: starting %d workers",
                SOCKET_MODE_CONNECTIONS,
                SOCKET_MODE_CONNECTIONS,
            )
            count = SOCKET_MODE_CONNECTIONS
    elif not settings.slack_enabled and settings.discord_shards is not None:
        # Discord alone, with this machine's shards named: no worker without one.
        count = min(count, len(settings.discord_shards))
    return count


class _Supervisor:
    def __init__(self, count: int, env: dict[str, str], signals: StopSignals) -> None:
        self._count = count
        self._env = env
        self._signals = signals
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False
        self._settings_problem = False
        self._ready: set[int] = set()  # workers that said they are running
        self._ready_changed = asyncio.Event()

    async def run(self) -> int:
        watchers = [asyncio.create_task(self._keep(index)) for index in range(self._count)]
        started = asyncio.create_task(self._announce())
        stop = asyncio.create_task(self._signals.first.wait())
        # A watcher ends early only when it failed (e.g. it could not start a process).
        await asyncio.wait({stop, *watchers}, return_when=asyncio.FIRST_COMPLETED)
        self._stopping = True
        stop.cancel()
        started.cancel()
        log.info("stopping: telling the %d workers to finish their answers", self._count)
        self._forward(signal.SIGTERM)
        again = asyncio.create_task(self._forward_again())
        try:
            ended = await asyncio.gather(*watchers, return_exceptions=True)
        finally:
            again.cancel()
        for outcome in ended:
            if isinstance(outcome, BaseException):
                raise outcome
        if self._settings_problem:
            return SETTINGS_EXIT
        return 0 if all(code == 0 for code in ended) else 1

    async def _announce(self) -> None:
        """Say so once every worker has said it is running (their first lines)."""
        while len(self._ready) < self._count:
            await self._ready_changed.wait()
            self._ready_changed.clear()
        pids = ", ".join(str(self._processes[i].pid) for i in sorted(self._processes))
        print(f"tokbot is running in {self._count} workers (pids {pids})", flush=True)

    async def _forward_again(self) -> None:
        await self._signals.again.wait()
        log.warning("stopping at once: the workers' answers still in flight are cut off")
        self._forward(signal.SIGTERM)

    def _forward(self, signum: int) -> None:
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    async def _keep(self, index: int) -> int:
        """Run worker `index`, restarting it when it dies unexpectedly; its last exit code."""
        pause = RESTART_FIRST_PAUSE
        while True:
            began = time.monotonic()
            code = await self._run_once(index)
            if self._stopping:
                return code
            if code == SETTINGS_EXIT:
                log.error("worker %d stopped on a settings problem: stopping them all", index)
                self._settings_problem = True
                self._signals.first.set()
                return code
            if time.monotonic() - began > RESTART_RESET_SECONDS:
                pause = RESTART_FIRST_PAUSE
            log.warning(
                "worker %d (pid %s) exited unexpectedly (%s); restarting it in %.1f s",
                index,
                self._processes[index].pid,
                _describe(code),
                pause,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._signals.first.wait(), pause)
            if self._stopping or self._signals.first.is_set():
                return code
            pause = min(pause * 2, RESTART_MAX_PAUSE)

    async def _run_once(self, index: int) -> int:
        process = await asyncio.create_subprocess_exec(
            *worker_command(index, self._count),
            env=self._env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # Its own session, so a Ctrl-C at the terminal reaches the supervisor alone (which
            # forwards it once). (uvloop does not take `process_group`.)
            start_new_session=True,
        )
        self._processes[index] = process
        if self._stopping:  # a signal came while it was starting
            process.send_signal(signal.SIGTERM)
        relay = asyncio.create_task(self._relay(index, process))
        code = await process.wait()
        await relay
        self._ready.discard(index)
        if process.stdin is not None:
            process.stdin.close()
        return code

    async def _relay(self, index: int, process: asyncio.subprocess.Process) -> None:
        """Pass the worker's output lines on; its first one says it is running."""
        assert process.stdout is not None
        while line := await process.stdout.readline():
            sys.stdout.write(line.decode(errors="replace"))
            sys.stdout.flush()
            if index not in self._ready:
                self._ready.add(index)
                self._ready_changed.set()


def worker_command(index: int, count: int) -> Sequence[str]:
    return [sys.executable, "-m", "adapters.cli", "run", "--worker", f"{index}/{count}"]


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


async def watch_supervisor(stop: asyncio.Event) -> None:
    """In a worker: set `stop` when stdin (a pipe from the supervisor) ends, i.e. when the
    supervisor is gone, so a worker never outlives it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass
    if not stop.is_set():
        log.warning("the supervisor is gone: stopping this worker")
        stop.set()

"""The `tokbot` command: the composition root that reads settings and starts what is asked."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from adapters.base import Adapter
from adapters.web import WebServer
from adapters.workers import WorkerSlot, default_workers, supervise, watch_supervisor
from bot.core import Core
from bot.logs import configure_logging, log_to_file
from bot.runtime import TokModelEndpoint, open_core, open_stand_in, open_store, settle_gc
from bot.settings import Settings, SettingsError, load_settings
from bot.tokmodel.fake import FakeTokModel

log = logging.getLogger("tokbot")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokbot", description="TokModel in your team's chat.")
    parser.add_argument("--version", action="version", version=f"tokbot {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = _command(
        sub,
        "run",
        "migrate the database and start every configured adapter",
        "Migrate the database, then start every adapter whose credentials are set (Slack, "
        "Discord, or both) and the web server (/healthz, /metrics, /slack/events, and /admin "
        "when TOKBOT_ADMIN_PASSWORD is set). Settings "
        "come from the environment and .env (see the README). Ctrl-C or SIGTERM stops it after "
        "the answers in flight finish (up to TOKBOT_DRAIN_SECONDS); a second one stops at once.",
    )
    run.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="worker processes sharing the work (default: TOKBOT_WORKERS, else one per CPU; "
        "on SQLite at most 2); 1 runs everything in this process",
    )
    # How the supervisor of --workers N starts each worker (adapters.workers); not for people.
    run.add_argument("--worker", type=WorkerSlot.parse, help=argparse.SUPPRESS)
    console = _command(
        sub,
        "console",
        "chat with tokbot in the terminal",
        "Chat in the terminal with the same commands as Slack and Discord (/help lists them). "
        "Reads stdin line by line when it is not a terminal, so it can be scripted.",
    )
    console.add_argument(
        "--offline",
        action="store_true",
        help="use the built-in TokModel stand-in (the default when TOKMODEL_API_KEY is unset)",
    )
    fake = _command(
        sub,
        "fake-tokmodel",
        "serve the TokModel stand-in",
        "Serve the TokModel stand-in (OpenAI-compatible answers, no network, no credits) "
        "until Ctrl-C; point TOKMODEL_BASE_URL at it.",
    )
    fake.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    fake.add_argument("--port", type=int, default=8099, help="port to listen on (%(default)s)")
    fake.add_argument(
        "--api-key",
        default=None,
        help="the key it accepts (default: $TOKMODEL_API_KEY, else 'stand-in-key')",
    )
    fake.add_argument(
        "--chunk-delay", type=float, default=0.03, help="seconds between chunks (%(default)s)"
    )
    invite = _command(
        sub,
        "discord-invite",
        "print the URL that adds the bot to a server",
        "Print the OAuth2 URL that adds the bot to a Discord server with the scopes and "
        "permissions it needs.",
    )
    invite.add_argument(
        "--client-id",
        help="the application id (Developer Portal → General Information; "
        "default: asked from Discord with DISCORD_TOKEN)",
    )
    _command(
        sub,
        "doctor",
        "check settings, database, TokModel and platforms; say how to fix",
        "Check the settings, the database, the TokModel key and each configured platform, and "
        "say how to fix each problem. Changes nothing: it creates no database and posts "
        "nothing. Exits 1 when a problem was found.",
    )
    _command(
        sub,
        "admin-password",
        "print the hashed form of an admin page password",
        "Ask for a password (or read one line from stdin) and print its scrypt hash, to put "
        "in TOKBOT_ADMIN_PASSWORD instead of the password itself.",
    )
    db = _command(sub, "db", "database maintenance", "Database maintenance.")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    _command(
        db_sub,
        "upgrade",
        "apply migrations up to the newest",
        "Create the database's tables, or migrate them to the newest revision (tokbot run "
        "does this at start-up too).",
    )
    return parser


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, about: str
) -> argparse.ArgumentParser:
    """A subcommand: `summary` in `tokbot --help`, `about` in its own --help."""
    return sub.add_parser(name, help=summary, description=about)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs at least 1, not {value}")
    return value


def _version() -> str:
    try:
        return importlib.metadata.version("tokbot")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


def _loop_factory(command: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """`tokbot run` runs on uvloop when it is installed (the `fast` extra): measured with
    `python -m bench`, about 10 % less of the bot's CPU per Slack mention and a millisecond or
    two less added latency (README: Benchmarks). Everything else keeps asyncio's own loop."""
    if command != "run":
        return None
    try:
        uvloop = importlib.import_module("uvloop")  # optional: not imported statically
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"tokbot: {exc}", file=sys.stderr)
        return 2
    configure_logging(
        settings.log_level, settings.secrets(), json_format=settings.log_format == "json"
    )
    console_log = _console_log_file(args, settings)
    if console_log is not None:
        log_to_file(console_log)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.command)) as runner:
            return runner.run(_dispatch(args, settings))
    except SettingsError as exc:
        print(f"tokbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "console":
        log_file = _console_log_file(args, settings)
        return await _console(settings, offline=args.offline, log_file=log_file)
    if args.command == "fake-tokmodel":
        return await _fake_tokmodel(settings, args)
    if args.command == "db":
        async with open_store(settings):
            print("database is at the newest revision")
        return 0
    if args.command == "run":
        if args.worker is not None:
            return await _run(settings, worker=args.worker)
        workers = args.workers or default_workers(settings)
        if workers == 1:
            return await _run(settings)
        _check_platforms(settings)
        return await supervise(settings, workers, _Signals())
    if args.command == "doctor":
        from adapters.doctor import run_doctor

        return await run_doctor(settings, sys.stdout)
    if args.command == "discord-invite":
        return await _discord_invite(settings, args.client_id)
    if args.command == "admin-password":
        return _admin_password()
    raise AssertionError(args.command)


@contextlib.asynccontextmanager
async def _endpoint(settings: Settings, *, offline: bool) -> AsyncIterator[TokModelEndpoint]:
    if offline or not settings.has_api_key:
        if not offline:
            print(
                "TOKMODEL_API_KEY is not set: using the built-in TokModel stand-in "
                "(offline answers). Set the key to talk to TokModel.",
                file=sys.stderr,
            )
        async with open_stand_in() as endpoint:
            yield endpoint
    else:
        yield TokModelEndpoint(settings.tokmodel_base_url, settings.api_key())


def _console_log_file(args: argparse.Namespace, settings: Settings) -> Path | None:
    """At a terminal the console's answers stream on the screen, so log lines go to a file
    (named in its banner) and none lands inside an answer. Piped, they stay on stderr."""
    if args.command != "console" or not sys.stdin.isatty():
        return None
    return settings.output_dir / "console.log"


async def _console(settings: Settings, *, offline: bool, log_file: Path | None = None) -> int:
    from adapters.console.adapter import ConsoleAdapter

    async with (
        _endpoint(settings, offline=offline) as endpoint,
        open_core(settings, endpoint) as core,
    ):
        await ConsoleAdapter(core, output_dir=settings.output_dir, log_file=log_file).run()
    return 0


async def _fake_tokmodel(settings: Settings, args: argparse.Namespace) -> int:
    from_env = settings.tokmodel_api_key is not None and args.api_key is None
    key = args.api_key or (settings.api_key() if from_env else "stand-in-key")
    fake = FakeTokModel(api_key=key, chunk_delay=args.chunk_delay)
    url = await fake.start(args.host, args.port)
    described = "the key in TOKMODEL_API_KEY" if from_env else f"the key {key!r}"
    print(f"TokModel stand-in at {url}, accepting {described}. Ctrl-C stops it.", flush=True)
    try:
        await _until_stopped()
    finally:
        await fake.stop()
    return 0


def _check_platforms(settings: Settings) -> None:
    if not (settings.slack_enabled or settings.discord_enabled):
        raise SettingsError(
            "no chat platform is configured: set SLACK_BOT_TOKEN (with SLACK_SIGNING_SECRET or "
            "SLACK_APP_TOKEN) or DISCORD_TOKEN, or try `tokbot console`"
        )


async def _run(settings: Settings, worker: WorkerSlot | None = None) -> int:
    """`tokbot run` in this process: alone, or as one `worker` of a supervisor."""
    endpoint = TokModelEndpoint(settings.tokmodel_base_url, settings.api_key())
    _check_platforms(settings)
    discord_enabled = settings.discord_enabled
    if worker is not None and discord_enabled:
        shards = worker.discord_shards(settings)
        discord_enabled = bool(shards)
        settings = settings.model_copy(
            update={"discord_shard_ids": ",".join(str(shard) for shard in shards)}
        )
    async with open_core(settings, endpoint, first=worker is None) as core:
        web = WebServer(
            settings.http_host,
            settings.http_port,
            metrics=core.metrics,
            reuse_port=worker is not None,
        )
        web.add_health_check("database", _database_check(core))
        web.add_degradation("tokmodel", lambda: core.alerts.problem)
        adapters: list[Adapter] = []
        if settings.slack_enabled:
            from adapters.slack import SlackAdapter

            share = 1 if worker is None else worker.count
            adapters.append(SlackAdapter(core, settings, web, budget_share=share))
        if discord_enabled:
            from adapters.discord import DiscordAdapter

            adapters.append(DiscordAdapter(core, settings))
        for adapter in adapters:
            web.add_health_check(adapter.name, adapter.healthy)
        # Whichever platforms run (Slack over HTTP or Socket Mode, Discord alone), the web
        # server does, so the admin page is there whenever its password is set.
        if settings.admin_page_enabled:
            from adapters.admin import mount

            mount(web, core, settings)
        await web.start()
        try:
            for adapter in adapters:
                await adapter.start()
            # From here on (before: Ctrl-C interrupts the start-up itself), stop gracefully.
            signals = _Signals()
            names = ", ".join(adapter.name for adapter in adapters)
            if worker is None:
                print(f"tokbot is running ({names}); web server on port {web.port}", flush=True)
            else:
                print(
                    f"tokbot worker {worker} is running ({names}), pid {os.getpid()}; "
                    f"web server on port {web.port}",
                    flush=True,
                )
                signals.watch(watch_supervisor(signals.first))
            # Everything loaded so far lives as long as the process: keep it out of the
            # garbage collector's full passes, which otherwise pause every ack (bench/: p99).
            settle_gc()
            await signals.first.wait()
            await _drain(adapters, core, settings.drain_seconds, signals)
        finally:
            for adapter in reversed(adapters):
                await adapter.stop()
            await web.stop()
    return 0


async def _discord_invite(settings: Settings, client_id: str | None) -> int:
    from adapters.discord.invite import invite

    # Discord ids are snowflakes: 64-bit integers, 17 to 20 digits today
    # (https://discord.com/developers/docs/reference#snowflakes).
    if client_id is not None and not re.fullmatch(r"\d{17,20}", client_id.strip()):
        raise SettingsError(
            f"--client-id {client_id!r} is not a Discord application id (17 to 20 digits): "
            "copy it from the Developer Portal → your application → General Information"
        )

    print(await invite(settings, client_id))
    return 0


def _admin_password() -> int:
    import getpass

    from adapters.admin.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("admin page password: ")
        if getpass.getpass("again: ") != password:
            raise SettingsError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        raise SettingsError("the admin password needs at least 12 characters")
    print(hash_password(password))
    return 0


def _database_check(core: Core) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        await core.store.ping()
        return True

    return check


class _Signals:
    """SIGINT and SIGTERM: the first asks to stop, a second to stop at once."""

    def __init__(self) -> None:
        self.first = asyncio.Event()
        self.again = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, self._received)

    def watch(self, watcher: Coroutine[Any, Any, None]) -> None:
        """Run `watcher` (which may set `first`) alongside, for as long as the loop runs."""
        task = asyncio.ensure_future(watcher)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def _received(self) -> None:
        (self.again if self.first.is_set() else self.first).set()


async def _drain(
    adapters: Sequence[Adapter], core: Core, seconds: float, signals: _Signals
) -> None:
    """One deadline for the whole process: every adapter's answers in flight, and the folds
    they started, get `seconds` to finish, then are cut off; a second signal cuts them off at
    once."""
    log.info(
        "stopping: answers in flight get up to %g s to finish (TOKBOT_DRAIN_SECONDS); "
        "Ctrl-C again stops at once",
        seconds,
    )
    drain: asyncio.Future[Any] = asyncio.gather(
        *(a.drain(seconds) for a in adapters), core.folding.drain(seconds)
    )
    again: asyncio.Future[Any] = asyncio.ensure_future(signals.again.wait())
    try:
        await asyncio.wait((drain, again), return_when=asyncio.FIRST_COMPLETED)
        if not drain.done():
            log.warning("stopping at once: answers still in flight are cut off")
            drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
    finally:
        again.cancel()


async def _until_stopped() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    await stop.wait()


if __name__ == "__main__":
    raise SystemExit(main())

"""The `tokbot` command line as an operator meets it: subprocesses, real files, real HTTP."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from adapters.cli import build_parser
from tests.db import POSTGRES_URL_VARIABLE, reset_postgres, worker_postgres_url

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        "TOKBOT_WORKERS": "1",  # one process (tests/reliability/test_workers.py: several)
    }
    env.update(extra)
    return env


def _tokbot(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args],
        cwd=tmp_path,
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    result = _tokbot(tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "cli.db") as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master")}
    assert {"conversations", "turns", "channel_settings", "alembic_version"} <= tables


def test_run_names_the_missing_setting(tmp_path: Path) -> None:
    result = _tokbot(tmp_path, "run")
    assert result.returncode == 2
    assert "TOKMODEL_API_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_without_a_platform_says_what_to_set(tmp_path: Path) -> None:
    result = _tokbot(tmp_path, "run", TOKMODEL_API_KEY="sk-cli-secret-value")
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN" in result.stderr and "DISCORD_TOKEN" in result.stderr
    assert "sk-cli-secret-value" not in result.stderr + result.stdout


def test_a_bad_setting_is_named(tmp_path: Path) -> None:
    result = _tokbot(tmp_path, "console", TOKBOT_RATE_LIMIT_PER_MINUTE="lots")
    assert result.returncode == 2
    assert "TOKBOT_RATE_LIMIT_PER_MINUTE" in result.stderr and "Traceback" not in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_fake_tokmodel_serves_until_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", "fake-tokmodel", "--port", str(port),
        "--api-key", "k-demo",
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert f"http://127.0.0.1:{port}" in banner.decode()
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/v1beta/models"
            async with http.get(url, headers={"Authorization": "Bearer k-demo"}) as ok:
                assert ok.status == 200 and (await ok.json())["object"] == "list"
            async with http.get(url, headers={"Authorization": "Bearer wrong"}) as denied:
                assert denied.status == 401
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=15)
    assert code == 0


# -- DATABASE_URL as people write it, and databases that are not there -----------------------


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_plain_sqlite_url_uses_the_async_driver(tmp_path: Path) -> None:
    result = _tokbot(tmp_path, "db", "upgrade", DATABASE_URL="sqlite:///plain.db")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "plain.db") as db:
        assert db.execute("select version_num from alembic_version").fetchone()


async def _postgres_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE, "")
    if not url.startswith("postgresql+asyncpg://"):
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set (a postgresql+asyncpg:// URL)")
    return await worker_postgres_url(url)


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_a_plain_postgres_url_uses_the_async_driver(tmp_path: Path, scheme: str) -> None:
    url = await _postgres_url()
    await reset_postgres(url)
    plain = scheme + "://" + url.partition("://")[2]
    result = _tokbot(tmp_path, "db", "upgrade", DATABASE_URL=plain)
    assert result.returncode == 0, result.stderr
    assert "newest revision" in result.stdout


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://bot:pw@db/tokbot", "SQLite or PostgreSQL"),
        ("tokbot.db", "not a database URL"),
        ("sqlite:////proc/no-such-dir/tokbot.db", "cannot open the SQLite database"),
        ("sqlite:///{not_sqlite}", "is not a SQLite database"),
        ("postgresql://bot:pw-secret@127.0.0.1:{port}/tokbot", "start it, or fix the host"),
        ("postgresql://bot:pw-secret@no-such-host.invalid/tokbot", "fix the host"),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line_with_the_fix(
    tmp_path: Path, url: str, expected: str
) -> None:
    (tmp_path / "notes.txt").write_text("not a database, " * 100)
    # The port: nothing listens there.
    url = url.format(port=_free_port(), not_sqlite=tmp_path / "notes.txt")
    for command in (["db", "upgrade"], ["console", "--offline"]):
        result = _tokbot(tmp_path, *command, DATABASE_URL=url, TOKBOT_DATABASE_WAIT_SECONDS="0")
        line = _one_line_error(result)
        assert expected in line and "DATABASE_URL" in line
        assert "pw-secret" not in line


@pytest.mark.postgres
async def test_a_missing_postgres_database_says_how_to_create_it(tmp_path: Path) -> None:
    url = (await _postgres_url()).rpartition("/")[0] + "/tokbot_no_such_database"
    line = _one_line_error(_tokbot(tmp_path, "db", "upgrade", DATABASE_URL=url))
    assert "does not exist" in line and "createdb" in line


async def _forward(port: int, target: tuple[str, int]) -> asyncio.Server:
    """A TCP forwarder: the database "comes up" on `port` once this starts."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(serve, "127.0.0.1", port)


@pytest.mark.postgres
async def test_a_database_still_starting_is_waited_for_and_said_once(tmp_path: Path) -> None:
    own = await _postgres_url()
    real = make_url(own)
    await reset_postgres(own)
    port = _free_port()
    url = real.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", "db", "upgrade",
        cwd=tmp_path,
        env=_env(tmp_path, DATABASE_URL=url, TOKBOT_DATABASE_WAIT_SECONDS="60"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None and process.stdout is not None
    server: asyncio.Server | None = None
    try:
        said = await asyncio.wait_for(process.stderr.readline(), timeout=30)
        assert b"not answering yet; retrying for up to 60 s" in said
        server = await _forward(port, (real.host or "127.0.0.1", real.port or 5432))
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if server is not None:
            server.close()
    assert process.returncode == 0, err.decode()
    assert b"newest revision" in out and b"not answering" not in err  # said once


# -- the command line itself ------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    result = _tokbot(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"tokbot \d+\.\d+\.\d+\S*\n", result.stdout)


def test_each_subcommand_describes_itself_and_its_options() -> None:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    subparsers = dict(commands.choices)
    subparsers.update(subparsers["db"]._actions[-1].choices)  # db upgrade
    for name, sub in subparsers.items():
        assert sub.description, f"`tokbot {name} --help` says nothing about what it does"
        for action in sub._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"`tokbot {name}`: {action.option_strings} has no help"


def test_run_help_describes_it(tmp_path: Path) -> None:
    result = _tokbot(tmp_path, "run", "--help")
    assert result.returncode == 0 and "Migrate the database" in result.stdout


def test_doctor_creates_no_database_file(tmp_path: Path) -> None:
    result = _tokbot(tmp_path, "doctor", DATABASE_URL="sqlite:///data/fresh.db")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()
    assert "data/fresh.db does not exist yet" in result.stdout
    assert "tokbot db upgrade" in result.stdout


@pytest.mark.parametrize("client_id", ["abc", "12345", "1234567890123456789012", "-1"])
def test_discord_invite_checks_the_client_id(tmp_path: Path, client_id: str) -> None:
    result = _tokbot(tmp_path, "discord-invite", "--client-id", client_id)
    line = _one_line_error(result)
    assert "--client-id" in line and "17 to 20 digits" in line


def test_discord_invite_with_a_client_id(tmp_path: Path) -> None:
    result = _tokbot(tmp_path, "discord-invite", "--client-id", "123456789012345678")
    assert result.returncode == 0, result.stderr
    assert "client_id=123456789012345678" in result.stdout


def test_only_run_uses_uvloop_and_only_when_installed() -> None:
    from adapters.cli import _loop_factory

    assert _loop_factory("console") is None
    uvloop = pytest.importorskip("uvloop")  # the `fast` extra
    assert _loop_factory("run") is uvloop.new_event_loop

"""The `tokbot` command line as an operator meets it: subprocesses, real files, real HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
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

"""`tokbot run` as an operator runs it: a subprocess against a fake Slack and the TokModel
stand-in, answering a signed slash command, then stopping cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from adapters.slack.fake import FakeSlack
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.conftest import API_KEY, STARTUP_SECONDS


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def send(slack: FakeSlack, events_url: str, mode: str, payload: dict[str, str]) -> None:
    if mode == "socket":
        envelope = await slack.send_envelope("slash_commands", payload)
        await slack.wait_for(lambda: envelope in slack.acks)
    else:
        status, _ = await slack.post_command(events_url, payload)
        assert status == 200


async def wait_running(process: asyncio.subprocess.Process) -> list[bytes]:
    """Wait for the line `tokbot run` prints once it serves (it must come, or the process
    exits); the lines it printed until then."""
    assert process.stdout is not None
    printed: list[bytes] = []
    async with asyncio.timeout(STARTUP_SECONDS):
        while b"tokbot is running" not in (printed[-1] if printed else b""):
            line = await process.stdout.readline()
            if not line:
                await process.wait()
                raise AssertionError(f"tokbot exited with {process.returncode}: {printed}")
            printed.append(line)
    return printed


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_tokbot_run_answers_slash_commands(
    slack: FakeSlack, fake: FakeTokModel, tmp_path: Path, mode: str
) -> None:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url,
        "TOKMODEL_API_KEY": API_KEY,
        "TOKMODEL_BASE_URL": fake.url,
        "TOKBOT_TOKMODEL_MAX_RETRIES": "0",
        "TOKBOT_TOKMODEL_TIMEOUT": "2",
        **({"SLACK_APP_TOKEN": slack.app_token} if mode == "socket" else {}),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/run.db",
        "TOKBOT_HTTP_HOST": "127.0.0.1",
        "TOKBOT_HTTP_PORT": str(port),
        "TOKBOT_WORKERS": "1",  # one process (tests/reliability/test_workers.py: several)
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.cli",
        "run",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    events = f"http://127.0.0.1:{port}/slack/events"
    printed: list[bytes] = []
    try:
        printed = await wait_running(process)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
                assert health.status == 200
        await send(slack, events, mode, slack.command_payload("/ask", "from afar"))
        await slack.wait_for(lambda: any("from afar" in t for t in slack.texts()))
        fake.fail(Fault(status=403, path="/v1/chat/completions"))
        await send(slack, events, mode, slack.command_payload("/ask", "still there?"))
        await slack.wait_for(lambda: any("out of credits" in t for t in slack.texts()))
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, err.decode()
    logs = b"".join(printed).decode() + out.decode() + err.decode()
    assert slack.bot_token not in logs and slack.signing_secret not in logs
    assert API_KEY not in logs and "Traceback" not in logs

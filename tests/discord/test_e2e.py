"""`tokbot run` and `tokbot discord-invite` as an operator runs them, against the fakes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import aiohttp

from adapters.discord.fake import FakeDiscord
from adapters.discord.invite import PERMISSIONS, invite
from bot.settings import Settings
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.conftest import API_KEY
from tests.discord.conftest import TOKEN
from tests.discord.helpers import CHAT, answer

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "admin page password 1"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "TOKBOT_LOG_LEVEL": "INFO",
        "TOKBOT_WORKERS": "1",  # one process (tests/reliability/test_workers.py: several)
        **extra,
    }


async def test_tokbot_run_answers_on_discord(
    tmp_path: Path, fake: FakeTokModel, discord_fake: FakeDiscord
) -> None:
    env = _env(
        tmp_path,
        DISCORD_TOKEN=TOKEN,
        DISCORD_API_BASE=discord_fake.api_base,
        DISCORD_GATEWAY_URL=discord_fake.gateway_url,
        TOKMODEL_API_KEY=API_KEY,
        TOKMODEL_BASE_URL=fake.url,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/e2e.db",
        TOKBOT_HTTP_HOST="127.0.0.1",
        TOKBOT_HTTP_PORT="0",
        TOKBOT_TOKMODEL_TIMEOUT="2",
        TOKBOT_TOKMODEL_RETRY_BUDGET="1",
        TOKBOT_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.cli",
        "run",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert b"tokbot is running (discord)" in line, line
        # Discord alone still runs the web server, and with it the admin page.
        port = line.decode().rsplit(" ", 1)[-1].strip()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/admin/login") as login,
        ):
            assert login.status == 200 and "log in" in await login.text()
        fake.set_reply("@everyone the answer is 42")
        inter = await discord_fake.interaction("ask", {"question": "the answer?"})
        (sent,) = await answer(discord_fake, inter, "@everyone the answer is 42")
        edits = [c for c in discord_fake.calls if c.path.endswith("/messages/@original")]
        assert edits and all(c.json and c.json["allowed_mentions"] == {"parse": []} for c in edits)
        fake.set_reply(None)
        fake.fail(Fault(status=429, retry_after=9, times=-1, path=CHAT))
        busy = await discord_fake.interaction("ask", {"question": "again?"})
        await answer(discord_fake, busy, "try again in about 9 seconds")
        msg = await discord_fake.message("<@900000000000000001> hi", mention_bot=True)
        fake.clear()
        await discord_fake.wait_for(
            lambda: any(m.reply_to == msg["id"] for m in discord_fake.messages.values())
        )
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
        err = (await process.stderr.read()).decode()
    assert code == 0, err
    assert TOKEN not in err and ADMIN_PASSWORD not in err and "Traceback" not in err


async def test_discord_invite_with_a_client_id(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.cli",
        "discord-invite",
        "--client-id",
        "123456789012345678",
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    url = urlparse(out.decode().strip())
    query = parse_qs(url.query)
    assert url.netloc == "discord.com" and url.path == "/oauth2/authorize"
    assert query == {
        "client_id": ["123456789012345678"],
        "scope": ["bot applications.commands"],
        "permissions": [str(PERMISSIONS)],
    }


async def test_discord_invite_looks_up_the_client_id(
    discord_settings: Callable[..., Settings], discord_fake: FakeDiscord
) -> None:
    url = await invite(discord_settings(), None)
    assert f"client_id={discord_fake.application_id}" in url


async def test_tokbot_run_stops_with_a_clear_error_without_the_intent(
    tmp_path: Path, fake: FakeTokModel, discord_fake: FakeDiscord
) -> None:
    discord_fake.grant_message_content = False
    env = _env(
        tmp_path,
        DISCORD_TOKEN=TOKEN,
        DISCORD_API_BASE=discord_fake.url,  # "/api/v10" is added
        DISCORD_GATEWAY_URL=discord_fake.gateway_url,
        TOKMODEL_API_KEY=API_KEY,
        TOKMODEL_BASE_URL=fake.url,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/e2e.db",
        TOKBOT_HTTP_HOST="127.0.0.1",
        TOKBOT_HTTP_PORT="0",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.cli",
        "run",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert "MESSAGE CONTENT INTENT" in err.decode() and "Traceback" not in err.decode()
    assert len(discord_fake.identified) == 1


async def test_tokbot_run_starts_without_voice_warnings(
    tmp_path: Path, fake: FakeTokModel, discord_fake: FakeDiscord
) -> None:
    """tokbot never joins voice channels: discord.py's "PyNaCl/davey is not installed, voice
    will NOT be supported" warnings are noise at every start."""
    env = _env(
        tmp_path,
        DISCORD_TOKEN=TOKEN,
        DISCORD_API_BASE=discord_fake.api_base,
        DISCORD_GATEWAY_URL=discord_fake.gateway_url,
        TOKMODEL_API_KEY=API_KEY,
        TOKMODEL_BASE_URL=fake.url,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/quiet.db",
        TOKBOT_HTTP_HOST="127.0.0.1",
        TOKBOT_HTTP_PORT="0",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.cli",
        "run",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert b"tokbot is running (discord)" in line, line
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
    err = (await process.stderr.read()).decode()
    assert "Discord: connected" in err  # start-up was logged, so a warning would be too
    assert "PyNaCl" not in err and "davey" not in err, err

"""The fake Slack's interactive mode (`python -m adapters.slack.fake --app-url …`): each line
typed is sent to the app; an empty line is skipped, and only end of input (Ctrl-D) quits."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def app_url() -> AsyncIterator[tuple[str, asyncio.Queue[str]]]:
    """A stand-in for tokbot's /slack/events: records the text of every request it gets."""
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def events(request: web.Request) -> web.Response:
        seen.put_nowait(parse_qs(await request.text()).get("text", [""])[0])
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/slack/events", events)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events", seen
    finally:
        await runner.cleanup()


async def test_an_empty_line_does_not_quit_and_end_of_input_does(
    app_url: tuple[str, asyncio.Queue[str]],
) -> None:
    url, seen = app_url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.slack.fake", "--port", "0", "--app-url", url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )  # fmt: skip
    assert process.stdin is not None
    try:
        process.stdin.write(b"\n   \n/help first\n")
        await process.stdin.drain()
        assert await asyncio.wait_for(seen.get(), 10) == "first"
        process.stdin.write(b"\n/help second\n")
        await process.stdin.drain()
        assert await asyncio.wait_for(seen.get(), 10) == "second"
        assert process.returncode is None
        process.stdin.close()  # Ctrl-D
        await asyncio.wait_for(process.wait(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert seen.empty()  # the blank lines sent nothing

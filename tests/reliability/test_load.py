"""1,000 slash commands across 100 channels at once to `tokbot run` (Slack HTTP mode, loopback):
none lost, none answered twice, and each channel's answers in the order its questions came.

The bot runs in its own process (forked, see harness), so it and the fakes use both cores."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from adapters.slack.fake import FakeSlack
from bot.tokmodel.fake import FakeTokModel
from tests.reliability.conftest import Figures
from tests.reliability.harness import ForkedTokbot, bot_env, free_port

CHANNELS = 100
PER_CHANNEL = 10
ASKED = re.compile(r"q(\d+)-(\d+)\b")


async def test_a_thousand_messages_across_a_hundred_channels(
    slack: FakeSlack,
    fake: FakeTokModel,
    database_url: str,
    tmp_path: Path,
    reliability: Figures,
) -> None:
    slack.update_limit = None  # 1,000 answers in a minute: far beyond one real workspace
    bot = ForkedTokbot(bot_env(slack, fake, database_url, tmp_path, free_port()), tmp_path / "log")
    bot.start()
    await bot.wait_healthy()
    async with aiohttp.ClientSession() as session:

        async def channel(c: int) -> None:
            # One channel's questions in order (each acknowledged before the next is sent); the
            # channels all at once.
            for n in range(PER_CHANNEL):
                payload = slack.command_payload("/ask", f"q{c}-{n}", channel_id=f"C{c:04d}")
                body = urlencode(payload)
                headers = {"Content-Type": "application/x-www-form-urlencoded", **slack.sign(body)}
                async with session.post(bot.events_url, data=body, headers=headers) as response:
                    assert response.status == 200

        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(channel(c) for c in range(CHANNELS))), 60)
        total = CHANNELS * PER_CHANNEL
        # (A deadline, not a pause: 8.9 s on this machine alone; at a load average of 17, with
        # other suites running, each answer took 100 s and every one came.)
        await slack.wait_for(
            lambda: sum("You said" in m.text for m in slack.messages) >= total, timeout=300
        )
        elapsed = time.monotonic() - started
    assert await bot.stop() == 0  # lets the last answers finish
    assert "Traceback" not in bot.logs()
    lost = duplicates = out_of_order = 0
    for c in range(CHANNELS):
        answered = [
            int(m.group(2))
            for text in slack.texts(f"C{c:04d}")
            if (m := ASKED.search(text.rpartition("You said")[2]))
        ]
        lost += len(set(range(PER_CHANNEL)) - set(answered))
        duplicates += len(answered) - len(set(answered))
        out_of_order += answered != sorted(answered)
    reliability.record(
        "load",
        f"{total} /ask across {CHANNELS} channels at once to `tokbot run` (Slack, loopback)",
        f"{total - lost}/{total} answered, {duplicates} twice, {out_of_order} channels out of "
        f"order, {elapsed:.1f} s",
        messages=total,
        answered=total - lost,
        duplicates=duplicates,
        channels_out_of_order=out_of_order,
        seconds=round(elapsed, 1),
    )
    assert (lost, duplicates, out_of_order) == (0, 0, 0)

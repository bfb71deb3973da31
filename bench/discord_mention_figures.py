"""The Discord mention path measured from outside (issue 16): a person's message mentioning the
bot, dispatched as MESSAGE_CREATE over the fake gateway to discord.py's real client, until the
answer's last message call (the reply, its edits) reaches the fake REST API; against the same
streamed TokModel call made directly (200 ms stand-in latency), interleaved. Then a burst of
mentions in as many channels by as many people, the fake in its own process, with the bot's
CPU per mention."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from adapters.discord import DiscordAdapter
from adapters.discord.client import TokbotClient
from adapters.discord.fake import FakeDiscord
from bench.adapter_figures import DISCORD_TOKEN, QUESTION
from bench.core_figures import direct_call
from bench.harness import (
    Figure,
    ProcessCpu,
    bench_core,
    child_process,
    median,
    percentile,
    stand_in,
)
from bot.core import Core


@asynccontextmanager
async def discord_bot(
    tokmodel_url: str, api_base: str, gateway_url: str
) -> AsyncIterator[tuple[Core, TokbotClient]]:
    """tokbot's Discord adapter connected to the fake at `api_base` / `gateway_url`."""
    extra = {
        "DISCORD_TOKEN": DISCORD_TOKEN,
        "DISCORD_API_BASE": api_base,
        "DISCORD_GATEWAY_URL": gateway_url,
    }
    async with bench_core(tokmodel_url, **extra) as core:
        adapter = DiscordAdapter(core, core.settings, guild_ready_timeout=0.05)
        await adapter.start()
        try:
            assert adapter.client is not None
            yield core, adapter.client
        finally:
            await adapter.stop()


async def settled(client: TokbotClient, timeout: float = 120) -> None:
    """Until every answer the client started is done (the store's bookkeeping included)."""
    deadline = time.monotonic() + timeout
    while client._tasks and time.monotonic() < deadline:
        await asyncio.sleep(0.001)


async def _mention(fake: FakeDiscord, client: TokbotClient, channel: int) -> float:
    """Seconds from dispatching the mention to the last message call of its answer (the
    reply and its edits; not the typing indicator) at the fake Discord."""
    seen = len(fake.calls)
    sent = time.monotonic()
    payload = await fake.message(
        f"<@{fake.application_id}> {QUESTION}", channel_id=channel, mention_bot=True
    )

    def replied() -> bool:
        return any(m.reply_to == payload["id"] for m in fake.messages.values())

    await fake.wait_for(replied, timeout=30)
    await settled(client)
    prefix = f"/channels/{channel}/messages"
    shown = [c.time for c in fake.calls[seen:] if c.path.startswith(prefix)]
    return max(shown) - sent


async def mention_overhead(runs: int) -> list[Figure]:
    """Added latency of a mention in a channel of the guild (p50, interleaved)."""
    fake = FakeDiscord(DISCORD_TOKEN)
    fake.more_channels = [fake.channel_id + 1 + n for n in range(10)]
    await fake.start()
    try:
        async with (
            stand_in() as tokmodel,
            discord_bot(tokmodel.url, fake.api_base, fake.gateway_url) as (core, client),
        ):
            await tokmodel.set_latency(0.2)
            await _mention(fake, client, fake.channel_id)
            await direct_call(core)
            direct, asked = [], []
            for index in range(runs):
                direct.append(await direct_call(core))
                asked.append(await _mention(fake, client, fake.more_channels[index % 10]))
    finally:
        await fake.stop()
    added = (median(asked) - median(direct)) * 1000
    added_p99 = (percentile(asked, 99) - percentile(direct, 99)) * 1000
    return [
        Figure(
            "Discord mention (MESSAGE_CREATE over the gateway) end to end: added p50",
            f"{added:.1f} ms (p99 {added_p99:.1f} ms)",
            "<= 3 ms",
            added <= 3,
        )
    ]


@asynccontextmanager
async def fake_process(channels: int) -> AsyncIterator[tuple[asyncio.subprocess.Process, Any]]:
    """The fake Discord in its own process (`bench.discord_load`); yields it and its URLs."""
    args = ("-m", "bench.discord_load", "--token", DISCORD_TOKEN, "--channels", str(channels))
    async with child_process(*args) as process:
        yield process, await _reply(process)


async def _command(process: asyncio.subprocess.Process, line: str) -> Any:
    assert process.stdin is not None
    process.stdin.write(line.encode() + b"\n")
    await process.stdin.drain()
    return await _reply(process)


async def _reply(process: asyncio.subprocess.Process) -> Any:
    assert process.stdout is not None
    return json.loads(await asyncio.wait_for(process.stdout.readline(), 60))


async def mention_burst(count: int) -> list[Figure]:
    """`count` mentions at once in `count` channels by `count` people (the fake Discord in its
    own process): all answered ÷ the same calls made directly, and the bot's CPU per mention
    (this process's: the bot alone)."""
    async with (
        stand_in() as tokmodel,
        fake_process(count) as (fake, urls),
        discord_bot(tokmodel.url, urls["api_base"], urls["gateway_url"]) as (core, client),
    ):
        await tokmodel.set_latency(0.2)
        await _burst(fake, client, 1, "warm")
        with ProcessCpu() as called:
            direct = [await _direct_burst(core, count)]
        cpu = time.process_time()
        with ProcessCpu() as mentioned:
            wall, answered = await _burst(fake, client, count, "b")
        cpu = time.process_time() - cpu
        direct.append(await _direct_burst(core, count))
    ratio = wall / median(direct)
    cpu_ms = cpu / count * 1000
    return [
        Figure(
            f"{count} Discord mentions at once ({count} channels, people): all answered ÷ direct",
            f"{ratio:.2f} ({wall:.2f} s ÷ {median(direct):.2f} s; {answered} answered)",
            "<= 1.5",
            ratio <= 1.5 and answered == count,
        ),
        Figure(
            "bot CPU per Discord mention, in that burst",
            f"{cpu_ms:.1f} ms",
            "<= 5 ms",
            cpu_ms <= 5,
        ),
        Figure("CPU in that burst: each process's", mentioned.summary(wall), "-", None),
        Figure(
            f"CPU in the same {count} calls made directly: each process's",
            called.summary(direct[0]),
            "-",
            None,
        ),
    ]


async def _direct_burst(core: Core, count: int) -> float:
    await core.tokmodel.close()  # no connection kept from before, as in the mentions' burst
    started = time.perf_counter()
    await asyncio.gather(*(direct_call(core) for _ in range(count)))
    return time.perf_counter() - started


async def _burst(
    fake: asyncio.subprocess.Process, client: TokbotClient, count: int, prefix: str
) -> tuple[float, int]:
    """Seconds from the burst's start to the last answer done (every task of the bot: a
    little after its final text), and how many mentions were answered. It starts with no
    connection to TokModel kept from before (so do the direct calls)."""
    await client.core.tokmodel.close()
    began = float((await _command(fake, f"burst {count} {prefix}"))["began"])
    deadline = time.monotonic() + 120
    while True:
        await settled(client)
        done = time.monotonic()
        answered = int((await _command(fake, "answered"))["answered"])
        if answered >= count or done > deadline:
            return done - began, answered
        await asyncio.sleep(0.01)  # (mentions still arriving, or being accepted)

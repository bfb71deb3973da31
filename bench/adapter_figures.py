"""Figures measured through the chat platforms' adapters, with the real slack-bolt and discord.py
talking to the loopback fakes: /ask end to end against a direct TokModel call, and Slack's ack
latency under a steady load."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import aiohttp

from adapters.discord import DiscordAdapter
from adapters.discord.fake import FakeDiscord
from adapters.slack import SlackAdapter
from adapters.slack.fake import FakeSlack
from adapters.slack.replier import PLACEHOLDER
from adapters.slack.translate import to_slack
from adapters.web import WebServer
from bench.core_figures import direct_call
from bench.harness import Figure, bench_core, free_port, median, percentile, stand_in
from bot.core import Core

DISCORD_TOKEN = "bench-discord-token"
SLACK_DEFAULTS = FakeSlack()  # never started: its default token, signing secret and team
QUESTION = "How do we deploy?"
PLACEHOLDER_MRKDWN = to_slack(PLACEHOLDER)
LONG_QUESTION = (
    "How do we deploy the service to production safely, step by step, with a rollback plan, "
    "database migrations run first, health checks watched, and who to call when it fails?"
)


# -- Slack ---------------------------------------------------------------------------------


@asynccontextmanager
async def slack_bot(
    tokmodel_url: str, slack_url: str, **settings: str
) -> AsyncIterator[tuple[Core, SlackAdapter, str]]:
    """tokbot's Slack adapter in HTTP mode on an ephemeral port, talking to the fake Slack at
    `slack_url` (with FakeSlack's default credentials); yields the events URL."""
    defaults = SLACK_DEFAULTS
    extra = {
        "SLACK_BOT_TOKEN": defaults.bot_token,
        "SLACK_SIGNING_SECRET": defaults.signing_secret,
        "SLACK_API_URL": slack_url + "/api/",
        # The figures are tokbot's own overhead and load, beyond one workspace's chat.update
        # limit on purpose: no edit budget (and no limit in the fake Slack).
        "TOKBOT_SLACK_EDITS_PER_MINUTE": "0",
        **settings,
    }
    async with bench_core(tokmodel_url, **extra) as core:
        web = WebServer("127.0.0.1", 0)
        adapter = SlackAdapter(core, core.settings, web, drain_timeout=5)
        await web.start()
        try:
            await adapter.start()
            yield core, adapter, f"http://127.0.0.1:{web.port}/slack/events"
        finally:
            await adapter.stop()
            await web.stop()


async def _signed_command(
    http: aiohttp.ClientSession, slack: FakeSlack, url: str, channel: str
) -> float:
    """Send a signed `/ask` and return when it was sent (monotonic clock)."""
    body = urlencode(slack.command_payload("/ask", QUESTION, channel_id=channel))
    headers = {"Content-Type": "application/x-www-form-urlencoded", **slack.sign(body)}
    sent = time.monotonic()
    async with http.post(url, data=body.encode(), headers=headers) as response:
        response.raise_for_status()
    return sent


async def _slack_ask(
    http: aiohttp.ClientSession, slack: FakeSlack, adapter: SlackAdapter, url: str, channel: str
) -> float:
    """Seconds from sending the signed request to the final message landing at the fake Slack
    (the last chat.postMessage / chat.update in the channel; the store's bookkeeping after it
    is not something a person waits for)."""
    seen = len(slack.calls)
    sent = await _signed_command(http, slack, url, channel)
    await slack.wait_for(
        lambda: (
            adapter.bot.busy == 0 and any(c.method == "chat.update" for c in slack.calls[seen:])
        ),
        timeout=30,
    )
    shown = [
        c.time
        for c in slack.calls[seen:]
        if c.method in ("chat.postMessage", "chat.update") and c.args.get("channel") == channel
    ]
    return max(shown) - sent


async def slack_overhead(runs: int) -> list[Figure]:
    """/ask through the Slack adapter (signed request in, final message at the fake Slack) vs
    a direct TokModel call, 200 ms latency, interleaved."""
    slack = FakeSlack()
    slack.update_limit = None  # see slack_bot
    await slack.start()
    try:
        async with (
            stand_in() as tokmodel,
            slack_bot(tokmodel.url, slack.url) as (core, adapter, url),
            aiohttp.ClientSession() as http,
        ):
            await tokmodel.set_latency(0.2)
            await _slack_ask(http, slack, adapter, url, "C0WARM")
            await direct_call(core)
            direct, asked = [], []
            for index in range(runs):
                direct.append(await direct_call(core))
                asked.append(await _slack_ask(http, slack, adapter, url, f"C{index % 10:04d}"))
    finally:
        await slack.stop()
    return [_overhead_figure("Slack", asked, direct)]


def _overhead_figure(platform: str, asked: list[float], direct: list[float]) -> Figure:
    ratio = median(asked) / median(direct)
    added_p50 = (median(asked) - median(direct)) * 1000
    added_p99 = (percentile(asked, 99) - percentile(direct, 99)) * 1000
    return Figure(
        f"{platform} /ask end to end ÷ direct TokModel call (200 ms latency), p50",
        f"{ratio:.3f}; added {added_p50:.1f} ms p50, {added_p99:.1f} ms p99",
        "<= 1.02; <= 5 ms p50, <= 25 ms p99",
        ratio <= 1.02 and added_p50 <= 5 and added_p99 <= 25,
    )


# -- Slack: native streaming vs chat.update ---------------------------------------------------

#: What a person first sees of an answer, by path: the stream's start, or the first post/update
#: that is not the placeholder.
_FIRST_TEXT = {"native": ("chat.startStream",), "update": ("chat.postMessage", "chat.update")}


async def slack_streaming_paths(runs: int) -> list[Figure]:
    """Mentions answered in threads on each path (TOKBOT_SLACK_STREAMING=native / update): from
    TokModel's first token (the request sent + the stand-in's 200 ms latency + one 50 ms chunk
    delay: its first event carries no text; the ack's few ms count against tokbot) to the first
    text the fake Slack receives, and the chat.* calls one
    answer costs (the stand-in echoes the 200-character question: ~45 words over ~1.3 s)."""
    latency, chunk_delay = 0.2, 0.05
    first: dict[str, list[float]] = {}
    calls: dict[str, list[int]] = {}
    async with stand_in(chunk_delay=chunk_delay) as tokmodel, aiohttp.ClientSession() as http:
        await tokmodel.set_latency(latency)
        for mode in ("native", "update"):
            slack = FakeSlack()
            slack.update_limit = None
            await slack.start()
            slack.add_user("U0ALICE", "Alice")
            try:
                async with slack_bot(tokmodel.url, slack.url, TOKBOT_SLACK_STREAMING=mode) as (
                    _,
                    adapter,
                    url,
                ):
                    await _mention_answer(http, slack, adapter, url, mode)  # warm-up
                    results = [
                        await _mention_answer(http, slack, adapter, url, mode) for _ in range(runs)
                    ]
            finally:
                await slack.stop()
            first[mode] = [shown - latency - chunk_delay for shown, _ in results]
            calls[mode] = [count for _, count in results]
    native, update = first["native"], first["update"]
    return [
        Figure(
            "Slack first token → first text, native stream (chat.update path)",
            f"p50 {median(native) * 1000:.0f} ms, p99 {percentile(native, 99) * 1000:.0f} ms "
            f"(update: p50 {median(update) * 1000:.0f} ms, "
            f"p99 {percentile(update, 99) * 1000:.0f} ms)",
            "native p50 < update p50",
            median(native) < median(update),
        ),
        Figure(
            "Slack chat.* calls per answer, native (chat.update path), p50",
            f"{median(calls['native']):.0f} (update: {median(calls['update']):.0f})",
            "-",
            None,
        ),
    ]


async def _mention_answer(
    http: aiohttp.ClientSession, slack: FakeSlack, adapter: SlackAdapter, url: str, mode: str
) -> tuple[float, int]:
    """Mention the bot once; return (seconds from sending to the first text at the fake Slack,
    chat.* calls of the answer)."""
    seen = len(slack.calls)
    event = slack.event_body(slack.message_event(LONG_QUESTION, mention=True))
    body = json.dumps(event)
    headers = {"Content-Type": "application/json", **slack.sign(body)}
    sent = time.monotonic()
    async with http.post(url, data=body.encode(), headers=headers) as response:
        response.raise_for_status()
    await slack.wait_for(
        lambda: adapter.bot.busy == 0 and any(m.ts for m in slack.messages[-1:]), timeout=30
    )
    answer = [c for c in slack.calls[seen:] if c.method.startswith("chat.")]
    texts = [
        c
        for c in answer
        if c.method in _FIRST_TEXT[mode] and c.args.get("text") != PLACEHOLDER_MRKDWN
    ]
    return texts[0].time - sent, len(answer)


# -- Discord -------------------------------------------------------------------------------


async def _discord_ask(
    fake: FakeDiscord, adapter: DiscordAdapter, channel: int
) -> tuple[float, list[str]]:
    """Seconds from dispatching INTERACTION_CREATE for `/ask` to the last edit or follow-up of
    its response arriving at the fake Discord; and the response's text."""
    client = adapter.client
    assert client is not None
    seen = len(fake.calls)
    sent = time.monotonic()
    interaction = await fake.interaction("ask", {"question": QUESTION}, channel_id=channel)
    token = interaction["token"]

    def answered() -> bool:
        return any(
            c.method == "PATCH" and token in c.path and (c.json or {}).get("content")
            for c in fake.calls[seen:]
        )

    await fake.wait_for(answered, timeout=30)
    while client._tasks:  # the core's bookkeeping after the final edit
        await asyncio.sleep(0.001)
    shown = [
        c.time
        for c in fake.calls[seen:]
        if token in c.path and not c.path.endswith("/callback") and c.method in ("PATCH", "POST")
    ]
    return max(shown) - sent, [m.content for m in fake.replies_to(interaction)]


async def discord_overhead(runs: int) -> list[Figure]:
    """/ask through the Discord adapter (INTERACTION_CREATE over the fake gateway in, final
    edit at the fake REST API) vs a direct TokModel call, 200 ms latency, interleaved."""
    fake = FakeDiscord(DISCORD_TOKEN)
    await fake.start()
    try:
        extra = {
            "DISCORD_TOKEN": DISCORD_TOKEN,
            "DISCORD_API_BASE": fake.api_base,
            "DISCORD_GATEWAY_URL": fake.gateway_url,
        }
        async with stand_in() as tokmodel, bench_core(tokmodel.url, **extra) as core:
            adapter = DiscordAdapter(core, core.settings, guild_ready_timeout=0.05)
            await adapter.start()
            try:
                await tokmodel.set_latency(0.2)
                await _discord_ask(fake, adapter, fake.channel_id)
                await direct_call(core)
                direct, asked = [], []
                for index in range(runs):
                    direct.append(await direct_call(core))
                    channel = fake.channel_id + 1 + index % 10
                    asked.append((await _discord_ask(fake, adapter, channel))[0])
            finally:
                await adapter.stop()
    finally:
        await fake.stop()
    return [_overhead_figure("Discord", asked, direct)]


# -- Slack ack latency under load ------------------------------------------------------------


async def slack_ack_latency(rate: int, seconds: float) -> list[Figure]:
    """Signed `/ask` slash commands at `rate` per second for `seconds`, sent by another process
    (so the load generator never shares the bot's event loop); the ack is the HTTP response.
    Every command starts a real answer (TokModel stand-in at 200 ms latency, the fake Slack in
    its own process too, as the real ones are) in the background."""
    async with (
        stand_in() as tokmodel,
        slack_process() as slack_url,
        slack_bot(tokmodel.url, slack_url) as (_, adapter, url),
    ):
        await tokmodel.set_latency(0.2)
        result = await _run_load(slack_url, url, rate, seconds)
        deadline = time.monotonic() + 120
        while adapter.bot.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    latencies = [ms / 1000 for ms in result["latencies_ms"]]
    p99 = percentile(latencies, 99) * 1000
    failed = int(result["failed"])
    return [
        Figure(
            f"Slack ack latency at {rate} requests/s for {seconds:g} s, p99",
            f"{p99:.1f} ms (p50 {median(latencies) * 1000:.1f} ms; {len(latencies):,} acks, "
            f"{failed} failed, {result['achieved_rate']:.0f}/s sent)",
            "<= 50 ms",
            p99 <= 50 and failed == 0,
        )
    ]


@asynccontextmanager
async def slack_process(people: int = 0) -> AsyncIterator[str]:
    """The fake Slack Web API in its own process (knowing `people` more users); yields its URL."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.slack.fake", "--port", str(port), "--no-update-limit",
        "--people", str(people), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    output = process.stdout

    async def drain() -> None:  # it prints every message it receives
        while await output.read(65536):
            pass

    try:
        await asyncio.wait_for(output.readline(), timeout=30)
        drainer = asyncio.create_task(drain())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()
    await drainer


async def _run_load(slack_url: str, url: str, rate: int, seconds: float) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.slack_load", "--url", url, "--rate", str(rate),
        "--seconds", str(seconds), "--secret", SLACK_DEFAULTS.signing_secret,
        "--team", SLACK_DEFAULTS.team_id, "--response-base", slack_url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed ({process.returncode})")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result

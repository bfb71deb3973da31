"""`python -m bench.mention_outside [RUNS]`: the Slack mention's added latency (fresh channel,
130-turn thread) with nothing but the bot in its process: the fake Slack and the sender of
the POSTs in a process of their own (`--peer`), the stand-in TokModel in a third. Interleaved
with the same mentions measured as `mention_figures` does (the fake Slack and the sender in
the bot's own event loop), and with the direct TokModel call, so the two ways compare in one
run. Times are the system's monotonic clock, shared by every process."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

import aiohttp

from adapters.slack.fake import FakeSlack
from bench import mention_figures
from bench.adapter_figures import slack_bot
from bench.core_figures import direct_call
from bench.harness import child_process, stand_in
from bench.mention_load import mention_pair, post_signed
from bench.profile_mention import _line


async def _peer() -> None:
    """The peer process: a fake Slack (printing its URL first), reading commands on stdin:
    `url BOT_URL`; `mention CHANNEL [THREAD_TS]` (both events, each POST on a new
    connection; prints when they were sent); `shown CHANNEL` (prints when the last chat.*
    call for that channel arrived)."""
    slack = FakeSlack()
    slack.update_limit = slack.append_limit = None
    slack.add_user("U0ALICE", "Alice")
    await slack.start()
    print(json.dumps({"url": slack.url}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    connector = aiohttp.TCPConnector(force_close=True)
    bot_url, seen = "", 0
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            while line := (await reader.readline()).decode().split():
                if line[0] == "url":
                    bot_url = line[1]
                    print("{}", flush=True)
                elif line[0] == "mention":
                    thread = line[2] if len(line) > 2 else None
                    seen = len(slack.calls)
                    events = mention_pair(
                        slack, mention_figures.QUESTION, user="U0ALICE", channel=line[1],
                        thread_ts=thread,
                    )  # fmt: skip
                    sent = time.monotonic()
                    acks = await asyncio.gather(
                        *(post_signed(http, slack, bot_url, e) for e in events)
                    )
                    print(json.dumps({"sent": sent, "acked": all(acks)}), flush=True)
                elif line[0] == "shown":
                    shown = [
                        c.time
                        for c in slack.calls[seen:]
                        if c.method.startswith("chat.") and c.args.get("channel") == line[1]
                    ]
                    print(json.dumps({"shown": max(shown, default=0.0)}), flush=True)
    finally:
        await slack.stop()


async def _idle(core: Any, adapter: Any) -> None:
    while tasks := [*adapter.bot._tasks, *core.folding._tasks.values()]:
        await asyncio.wait(tasks)


async def compare(runs: int) -> dict[str, list[float]]:
    inside = FakeSlack()
    inside.update_limit = inside.append_limit = None
    inside.add_user("U0ALICE", "Alice")
    await inside.start()
    found: dict[str, list[float]] = {
        k: [] for k in ("direct", "fresh in", "fresh out", "thread in", "thread out")
    }
    connector = aiohttp.TCPConnector(force_close=True)
    try:
        async with (
            child_process("-m", "bench.mention_outside", "--peer") as peer,
            stand_in() as tokmodel,
            aiohttp.ClientSession(connector=connector) as http,
        ):
            assert peer.stdout is not None
            outside_url = json.loads(await peer.stdout.readline())["url"]
            # One bot talks to both fakes: Web API calls go where SLACK_API_URL says, so two
            # bots (one per fake), each measured in turn.
            async with (
                slack_bot(tokmodel.url, inside.url) as (core_in, adapter_in, url_in),
                slack_bot(tokmodel.url, outside_url) as (core_out, adapter_out, url_out),
            ):
                await _line(peer, f"url {url_out}")
                threads = [f"1700000000.{n:06d}" for n in range(runs + 1)]
                for thread_ts in threads:
                    for core in (core_in, core_out):
                        await mention_figures._seed_thread(core.store, "C0THREAD", thread_ts, 130)
                await tokmodel.set_latency(0.2)

                def busy() -> int:
                    return int(adapter_in.bot.busy)

                async def out(channel: str, thread: str | None) -> float:
                    sent = json.loads(await _line(peer, f"mention {channel} {thread or ''}"))
                    await _idle(core_out, adapter_out)
                    shown = json.loads(await _line(peer, f"shown {channel}"))["shown"]
                    return float(shown - sent["sent"])

                async def within(channel: str, thread: str | None) -> float:
                    seconds = await mention_figures._mention(
                        http, inside, url_in, busy, channel, thread
                    )
                    await _idle(core_in, adapter_in)
                    return seconds

                await within("C0WARM", None)
                await out("C0WARM", None)
                await within("C0THREAD", threads[-1])
                await out("C0THREAD", threads[-1])
                for index in range(runs):
                    found["direct"].append(await direct_call(core_in))
                    found["fresh in"].append(await within(f"C0F{index:04d}", None))
                    found["fresh out"].append(await out(f"C0F{index:04d}", None))
                    found["thread in"].append(await within("C0THREAD", threads[index]))
                    found["thread out"].append(await out("C0THREAD", threads[index]))
    finally:
        await inside.stop()
    return found


def main() -> None:
    if sys.argv[1:] == ["--peer"]:
        asyncio.run(_peer())
        return
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    found = asyncio.run(compare(runs))
    direct = statistics.median(found["direct"])
    print(f"direct p50 {direct * 1000:.1f} ms; added p50 (ms; 'in': the fake Slack and the")
    print("sender in the bot's event loop, as mention_figures; 'out': in their own process)")
    for name in ("fresh in", "fresh out", "thread in", "thread out"):
        added = (statistics.median(found[name]) - direct) * 1000
        print(f"  {name:<11} {added:5.1f}")


if __name__ == "__main__":
    main()

"""Figures measured at the core (no chat platform in the way): overhead against a direct
TokModel call, concurrency, history size, memory, and time to the first visible text."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
import time

from sqlalchemy import text

from bench.harness import (
    Figure,
    ProcessCpu,
    TimedReplier,
    bench_core,
    median,
    percentile,
    rss_mb,
    stand_in,
)
from bot.core import Core
from bot.domain import Author, ConversationKey, Incoming, TurnKind, TurnRole
from bot.tokmodel.types import ChatMessage

ASKER = Author("u-bench", "Bench")


def ask(channel: str, question: str = "How do we deploy?") -> Incoming:
    return Incoming(ConversationKey("bench", "w", channel), ASKER, "ask", question)


async def direct_call(core: Core) -> float:
    started = time.perf_counter()
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "How do we deploy?")]
    async for _ in core.tokmodel.chat_stream(messages, core.settings.chat_model):
        pass
    return time.perf_counter() - started


async def timed_ask(core: Core, channel: str) -> tuple[float, TimedReplier]:
    replier = TimedReplier()
    started = time.perf_counter()
    await core.handle(ask(channel), replier)
    return time.perf_counter() - started, replier


async def overhead(runs: int) -> list[Figure]:
    """/ask through the core vs the same TokModel call made directly, 200 ms latency."""
    async with stand_in() as tokmodel, bench_core(tokmodel.url) as core:
        await tokmodel.set_latency(0.2)
        await timed_ask(core, "warm-up")
        direct, asked = [], []
        for index in range(runs):  # interleaved, so drift in the machine hits both alike
            direct.append(await direct_call(core))
            asked.append((await timed_ask(core, f"c{index % 10}"))[0])
    ratio = median(asked) / median(direct)
    added_p50 = (median(asked) - median(direct)) * 1000
    added_p99 = (percentile(asked, 99) - percentile(direct, 99)) * 1000
    return [
        Figure(
            "core /ask ÷ direct TokModel call (200 ms latency), p50",
            f"{ratio:.3f}; added {added_p50:.1f} ms p50, {added_p99:.1f} ms p99",
            "<= 1.02; <= 5 ms p50, <= 25 ms p99",
            ratio <= 1.02 and added_p50 <= 5 and added_p99 <= 25,
        )
    ]


async def concurrency(channels: int) -> list[Figure]:
    """`channels` simultaneous /ask, one per channel, with a 1 s TokModel latency; then the same
    number of TokModel calls made directly, at once (what the stand-in and one Python client
    can do at best on this machine)."""
    async with stand_in() as tokmodel, bench_core(tokmodel.url) as core:
        await tokmodel.set_latency(1.0)
        # Each burst starts with no connection to TokModel kept from the one before (the direct
        # calls ran on the 1,000 the /asks had opened, until 2026-11-30: ~0.4 ms less each).
        await core.tokmodel.close()
        started, cpu = time.perf_counter(), time.process_time()
        with ProcessCpu() as asked:
            await asyncio.gather(*(timed_ask(core, f"ch{i}") for i in range(channels)))
        wall = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu) / channels * 1000
        await core.tokmodel.close()
        started = time.perf_counter()
        with ProcessCpu() as called:
            await asyncio.gather(*(direct_call(core) for _ in range(channels)))
        floor = time.perf_counter() - started
    return [
        Figure(
            f"{channels:,} simultaneous /ask in {channels:,} channels (1 s latency): wall ÷ 1 s",
            f"{wall:.2f} (the same calls made directly: {floor:.2f}, so ÷ direct "
            f"{wall / floor:.2f}; the bot's CPU: {cpu_ms:.1f} ms per /ask)",
            "<= 1.3",
            wall <= 1.3,
        ),
        Figure(
            f"CPU in those {channels:,} /ask (1 s latency): each process's",
            asked.summary(wall),
            "-",
            None,
        ),
        Figure(
            f"CPU in the same {channels:,} calls made directly: each process's",
            called.summary(floor),
            "-",
            None,
        ),
    ]


async def history_size(big: int, small: int, runs: int) -> list[Figure]:
    """/ask in a channel with `big` stored messages vs one with `small` (no TokModel latency)."""
    async with stand_in() as tokmodel, bench_core(tokmodel.url) as core:
        for channel, count in (("big", big), ("small", small)):
            await _fill(core, channel, count)
        await timed_ask(core, "big")
        await timed_ask(core, "small")
        big_times, small_times = [], []
        for _ in range(runs):
            big_times.append((await timed_ask(core, "big"))[0])
            small_times.append((await timed_ask(core, "small"))[0])
    ratio = median(big_times) / median(small_times)
    return [
        Figure(
            f"/ask with {big:,} vs {small:,} stored messages in the channel, p50",
            f"{ratio:.3f} ({median(big_times) * 1000:.1f} vs {median(small_times) * 1000:.1f} ms)",
            "<= 1.1",
            ratio <= 1.1,
        )
    ]


async def _fill(core: Core, channel: str, count: int) -> None:
    """`count` turns in one statement (a recursive CTE), 400 characters each, alternating."""
    key = ask(channel).key
    await core.store.add_turn(
        key, role=TurnRole.USER, kind=TurnKind.TEXT, content="seed", author=ASKER
    )
    async with core.store.engine.begin() as conn:
        conversation_id = (
            await conn.execute(
                text("SELECT id FROM conversations WHERE channel = :c"), {"c": channel}
            )
        ).scalar_one()
        await conn.execute(
            text(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < :count)"
                " INSERT INTO turns (conversation_id, role, kind, status, content, author_id,"
                " author_name, created_at)"
                " SELECT :cid, CASE x % 2 WHEN 0 THEN 'assistant' ELSE 'user' END, 'text', 'ok',"
                " printf('%.400c', 'x'), 'u', 'Bench', 0 FROM n"
            ),
            {"count": count - 1, "cid": conversation_id},
        )


async def memory(channels: int) -> list[Figure]:
    """Peak RSS after `channels` channels asked once, then growth over as many more; in a
    process of its own (the bench process runs other figures before it, and keeps much of what
    they held: the 1,000 /asks at once left it at ~137 MB, and the figure read 161 MB)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.core_figures", "memory", str(channels),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the memory figure's process failed ({process.returncode})")
    return [Figure(**json.loads(out.decode().strip().splitlines()[-1]))]


async def _memory_here(channels: int) -> Figure:
    started, _ = rss_mb()
    async with stand_in() as tokmodel, bench_core(tokmodel.url) as core:
        await _ask_many(core, "a", channels)
        after_first, peak = rss_mb()
        await _ask_many(core, "b", channels)
        after_second, peak = rss_mb()
    growth = (after_second - after_first) / after_first * 100
    return Figure(
        f"peak RSS after {channels:,} channels asked once; growth over {channels:,} more",
        f"{peak:.0f} MB; {growth:+.1f} % (the process alone; {started:.0f} MB at its start)",
        "<= 150 MB; <= 5 %",
        peak <= 150 and growth <= 5,
    )


async def _ask_many(core: Core, prefix: str, channels: int, parallel: int = 50) -> None:
    queue = iter(range(channels))

    async def worker() -> None:
        for index in queue:
            await timed_ask(core, f"{prefix}{index}")

    await asyncio.gather(*(worker() for _ in range(parallel)))


async def first_visible_edit(runs: int) -> list[Figure]:
    """From TokModel's first streamed token to the first edit a user sees (1 s edit interval)."""
    latency = 0.2
    async with stand_in(chunk_delay=0.05) as tokmodel, bench_core(tokmodel.url) as core:
        await tokmodel.set_latency(latency)
        delays = []
        for index in range(runs):
            started = time.perf_counter()
            _, replier = await timed_ask(core, f"fv{index}")
            assert replier.first_text_at is not None
            delays.append(replier.first_text_at - started - latency)
    worst = max(delays)
    return [
        Figure(
            "first streamed token → first visible edit (1 s edit interval), worst",
            f"{worst:.2f} s (p50 {median(delays):.2f} s)",
            "<= 1.2 s",
            worst <= 1.2,
        )
    ]


if __name__ == "__main__":  # `memory`'s own process: python -m bench.core_figures memory N
    logging.basicConfig(level=logging.WARNING)
    figure = asyncio.run(_memory_here(int(sys.argv[2])))
    print(json.dumps(dataclasses.asdict(figure)))

"""What a budget costs an /ask: the check reads the day counters of `usage_daily` (see
bot/store/budgets.py), so a busy month costs no more than a quiet one."""

from __future__ import annotations

import time

from bench.core_figures import ASKER, ask, timed_ask
from bench.harness import Figure, bench_core, median, stand_in
from bot.budgets import Limit
from bot.tokmodel.types import Usage


async def budget_check(records: int, runs: int) -> list[Figure]:
    """/ask in a channel with a monthly budget and `records` requests counted this month, vs
    /ask in a channel with no budget (interleaved; no TokModel latency)."""
    async with stand_in() as tokmodel, bench_core(tokmodel.url) as core:
        key = ask("budgeted").key
        limit = Limit(10**12, "month")
        await core.budgets.set(key.platform, key.workspace, "channel", key.channel, limit, by="b")
        usage = Usage(10, 10, 20)
        for _ in range(records):
            await core.store.record_usage(key, user_id=ASKER.id, command="ask", model=None,
                                          usage=usage)  # fmt: skip
        await timed_ask(core, "budgeted")
        await timed_ask(core, "free")
        with_budget: list[float] = []
        without: list[float] = []
        cpu = {"budgeted": 0.0, "free": 0.0}  # this process's CPU: steadier on a busy machine
        for _ in range(runs):
            for channel, times in (("budgeted", with_budget), ("free", without)):
                started = time.process_time()
                times.append((await timed_ask(core, channel))[0])
                cpu[channel] += time.process_time() - started
    ratio = median(with_budget) / median(without)
    cpu_ms = {channel: spent / runs * 1000 for channel, spent in cpu.items()}
    return [
        Figure(
            f"/ask with a channel budget ({records:,} requests this month) vs none, p50",
            f"{ratio:.3f} ({median(with_budget) * 1000:.1f} vs {median(without) * 1000:.1f} ms;"
            f" CPU {cpu_ms['budgeted']:.1f} vs {cpu_ms['free']:.1f} ms)",
            "<= 1.05",
            ratio <= 1.05,
        )
    ]

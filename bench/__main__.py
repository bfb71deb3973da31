"""`python -m bench [--quick]`: every figure, measured side by side in one run, with its target."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from adapters.cli import _loop_factory
from bench import (
    adapter_figures,
    budget_figures,
    core_figures,
    discord_mention_figures,
    embedding_figures,
    memory_figures,
    mention_figures,
    vision_figures,
    workers_figures,
)
from bench.harness import Figure, shared_stand_ins

Runner = Callable[[], Awaitable[list[Figure]]]


def plan(quick: bool) -> list[Runner]:
    if quick:  # a few seconds in CI, so the benchmarks cannot rot
        return [
            lambda: core_figures.overhead(runs=5),
            lambda: adapter_figures.slack_overhead(runs=5),
            lambda: adapter_figures.discord_overhead(runs=5),
            lambda: core_figures.concurrency(channels=50),
            lambda: core_figures.history_size(big=2_000, small=100, runs=15),
            lambda: core_figures.memory(channels=100),
            lambda: adapter_figures.slack_ack_latency(rate=200, seconds=1.0),
            lambda: core_figures.first_visible_edit(runs=2),
            lambda: budget_figures.budget_check(records=500, runs=15),
            lambda: memory_figures.recall(big=10_000, runs=15),
            lambda: adapter_figures.slack_streaming_paths(runs=1),
            lambda: vision_figures.picture_overhead(runs=5),
            lambda: mention_figures.mention_overhead(runs=3),
            lambda: mention_figures.mention_burst(count=50),
            lambda: mention_figures.mention_burst_postgres(count=50),
            lambda: discord_mention_figures.mention_overhead(runs=5),
            lambda: discord_mention_figures.mention_burst(count=30),
            lambda: embedding_figures.throughput(messages=1_000),
            lambda: embedding_figures.answer_latency(queued=2_000, runs=5),
            lambda: workers_figures.workers_burst(count=20, workers=(2,), rounds=1),
            lambda: mention_figures.first_visible_text(runs=2),
        ]
    return [
        lambda: core_figures.overhead(runs=30),
        lambda: adapter_figures.slack_overhead(runs=30),
        lambda: adapter_figures.discord_overhead(runs=30),
        lambda: core_figures.concurrency(channels=1_000),
        lambda: core_figures.history_size(big=1_000_000, small=100, runs=30),
        lambda: core_figures.memory(channels=10_000),
        lambda: adapter_figures.slack_ack_latency(rate=200, seconds=10),
        lambda: core_figures.first_visible_edit(runs=5),
        lambda: budget_figures.budget_check(records=10_000, runs=30),
        lambda: memory_figures.recall(big=1_000_000, runs=15),
        lambda: adapter_figures.slack_streaming_paths(runs=30),
        lambda: vision_figures.picture_overhead(runs=30),
        lambda: mention_figures.mention_overhead(runs=30),
        lambda: mention_figures.mention_burst(count=200),
        lambda: mention_figures.mention_burst_postgres(count=200),
        lambda: discord_mention_figures.mention_overhead(runs=30),
        lambda: discord_mention_figures.mention_burst(count=100),
        lambda: embedding_figures.throughput(messages=100_000),
        lambda: embedding_figures.answer_latency(queued=20_000, runs=30),
        lambda: workers_figures.workers_burst(count=200, rounds=2),
        lambda: mention_figures.mention_burst(count=1_000),
        lambda: mention_figures.first_visible_text(runs=30),
    ]


async def run(quick: bool, only: str | None = None) -> list[Figure]:
    figures: list[Figure] = []
    runners = [r for r in plan(quick) if only is None or only in r.__code__.co_names]
    async with shared_stand_ins():
        for runner in runners:
            measured = await runner()  # (none: a figure that needs what this machine lacks)
            figures.extend(measured)
            for figure in measured[-1:]:
                print(f"  … {figure.name}: {figure.measured}", flush=True)
    return figures


def report(figures: list[Figure], seconds: float, quick: bool) -> str:
    width = max(len(f.name) for f in figures)
    lines = [
        f"tokbot benchmarks ({'quick' if quick else 'full'}) on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {seconds:.0f} s",
        "",
        f"| {'figure'.ljust(width)} | measured | target | met |",
        f"|{'-' * (width + 2)}|---|---|---|",
    ]
    for figure in figures:
        met = {True: "yes", False: "NO", None: "-"}[figure.ok]
        lines.append(
            f"| {figure.name.ljust(width)} | {figure.measured} | {figure.target} | {met} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument(
        "--only",
        metavar="NAME",
        help="run only the figures of this module's function (e.g. mention_burst)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE.html",
        help="profile this process with pyinstrument (a dev dependency) into FILE.html",
    )
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="run on uvloop, as `tokbot run` does when it is installed (the `fast` extra)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("discord.client").setLevel(logging.ERROR)  # "voice will NOT be supported"
    profiler = None
    if args.profile:
        try:
            from pyinstrument import Profiler
        except ImportError:
            parser.error("--profile needs pyinstrument: pip install pyinstrument")
        profiler = Profiler(async_mode="disabled")
        profiler.start()
    started = time.perf_counter()
    loop_factory = _loop_factory("run") if args.uvloop else None
    if args.uvloop and loop_factory is None:
        parser.error("--uvloop needs uvloop: pip install -e '.[fast]'")
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        figures = runner.run(run(args.quick, args.only))
    print(report(figures, time.perf_counter() - started, args.quick))
    if profiler is not None:
        profiler.stop()
        Path(args.profile).write_text(profiler.output_html())
        print(f"profile written to {args.profile}")


if __name__ == "__main__":
    main()

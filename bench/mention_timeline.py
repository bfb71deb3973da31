"""`python -m bench.mention_timeline [RUNS]`: when each step of a Slack mention's answer
happens, in ms after its two POSTs are sent (medians of RUNS mentions, fresh channel and
130-turn thread interleaved with the direct TokModel call, as `mention_figures` sends them).
The steps are marked by wrapping the bot's own functions in this process only (a measuring
aid: nothing of it is in tokbot). After each mention the bot is left idle (its folds and
inbox marks done), so one mention's background work never lands in the next one's timeline."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import adapters.slack.app as slack_app
import adapters.slack.users as slack_users
import bot.core as core_module
import bot.handlers.chat as chat
import bot.streaming as streaming
from bench import mention_figures
from bench.adapter_figures import slack_bot
from bench.core_figures import direct_call
from bench.harness import stand_in

_marks: dict[str, float] = {}

#: (mark, what it is), in the order they happen.
MARKS = [
    ("accept", "the app_mention reaches Core.accept (bolt done)"),
    ("accepted", "its inbox INSERT done (the ack goes out)"),
    ("run_event", "the answer's task starts (SlackBot._run_event)"),
    ("dispatch", "the core dispatches /ask (user looked up, turn taken)"),
    ("answer", "bot.handlers.chat.answer starts"),
    ("context", "the read ahead taken (settings, newest turns, summary, budgets)"),
    ("pages", "older pages read (a long thread)"),
    ("asked", "TokModel asked (context built, recall checked)"),
    ("first", "TokModel's first delta"),
    ("last", "TokModel's stream ended"),
    ("finish", "the renderer's final render starts"),
    ("shown", "the final chat.* call reaches the fake Slack (end to end)"),
]


def _mark(name: str) -> None:
    _marks.setdefault(name, time.monotonic())


def _wrap(owner: Any, name: str, before: str | None, after: str | None = None) -> None:
    original = getattr(owner, name)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before:
            _mark(before)
        result = await original(*args, **kwargs)
        if after:
            _mark(after)
        return result

    setattr(owner, name, wrapped)


def _instrument() -> None:
    _wrap(core_module.Core, "accept", "accept", "accepted")
    _wrap(slack_app.SlackBot, "_run_event", "run_event")
    _wrap(slack_users.UserDirectory, "author", None)
    _wrap(core_module.Core, "_dispatch", "dispatch")
    _wrap(chat, "answer", "answer")
    _wrap(chat, "_context_within_budget", None, "context")
    _wrap(chat, "_recent_turns", None, "pages")
    _wrap(streaming.StreamRenderer, "finish", "finish")
    original_ask: Callable[..., Any] = chat._ask

    def ask(inv: Any, messages: Any, model: str) -> Any:
        _mark("asked")
        asked = original_ask(inv, messages, model)
        stream = asked.stream

        async def marked() -> Any:
            async for delta in stream:
                _mark("first")
                yield delta
            _mark("last")

        asked.stream = marked()
        return asked

    chat._ask = ask


async def _idle(core: Any, adapter: Any) -> None:
    while tasks := [*adapter.bot._tasks, *core.folding._tasks.values()]:
        await asyncio.wait(tasks)
    await asyncio.sleep(0.1)  # (the inbox's done marks are flushed 50 ms after an answer)


async def timeline(runs: int) -> dict[str, Any]:
    _instrument()
    rows: dict[str, list[dict[str, float]]] = {"fresh": [], "thread": []}
    direct: list[float] = []
    async with (
        mention_figures.fake_slack() as slack,
        stand_in() as tokmodel,
        slack_bot(tokmodel.url, slack.url) as (core, adapter, url),
        mention_figures.new_connections() as http,
    ):
        threads = [f"1700000000.{n:06d}" for n in range(runs + 1)]
        for thread_ts in threads:
            await mention_figures._seed_thread(core.store, "C0THREAD", thread_ts, 130)
        await tokmodel.set_latency(0.2)

        def busy() -> int:
            return int(adapter.bot.busy)

        await mention_figures._mention(http, slack, url, busy, "C0WARM")
        await mention_figures._mention(http, slack, url, busy, "C0THREAD", threads[-1])
        await _idle(core, adapter)
        for index in range(runs):
            direct.append(await direct_call(core))
            for kind in ("fresh", "thread"):
                _marks.clear()
                sent = time.monotonic()
                channel, thread = (
                    (f"C0F{index:04d}", None) if kind == "fresh" else ("C0THREAD", threads[index])
                )
                shown = await mention_figures._mention(http, slack, url, busy, channel, thread)
                row = {name: (at - sent) * 1000 for name, at in _marks.items()}
                rows[kind].append({**row, "shown": shown * 1000})
                await _idle(core, adapter)
    return {"direct": statistics.median(direct) * 1000, **rows}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    found = asyncio.run(timeline(runs))
    print(f"direct TokModel call (200 ms stand-in latency), p50: {found['direct']:.1f} ms")
    print(f"{'ms after the POSTs, p50':<70} {'fresh':>7} {'thread':>7}")
    for name, what in MARKS:
        cells = []
        for kind in ("fresh", "thread"):
            values = [row[name] for row in found[kind] if name in row]
            cells.append(f"{statistics.median(values):7.1f}" if values else "      -")
        print(f"{name + ': ' + what:<70} {cells[0]} {cells[1]}")
    for kind in ("fresh", "thread"):
        added = statistics.median(row["shown"] for row in found[kind]) - found["direct"]
        print(f"added p50, {kind}: {added:.1f} ms")


if __name__ == "__main__":
    main()

"""`python -m bench.instructions N`: N `/ask`s at once through the core, each with an event id
(so the inbox INSERT, and the read ahead beside it, are in it; `core_figures.timed_ask` has
none), after 5 to warm up. For counting instructions, which a busy machine does not change:

    valgrind --tool=callgrind python -m bench.instructions 0
    valgrind --tool=callgrind python -m bench.instructions 200

(the `python` binary itself, not a pyenv shim); the difference of the two totals ÷ 200 is the
bot's instructions per `/ask` (the stand-in runs in its own process, uncounted)."""

from __future__ import annotations

import asyncio
import sys

from bench.harness import TimedReplier, bench_core, stand_in
from bot.core import Core
from bot.domain import Author, ConversationKey, Incoming


async def _ask(core: Core, name: str) -> None:
    incoming = Incoming(
        ConversationKey("bench", "w", name),
        Author("u1", "Ada"),
        "ask",
        "How do we deploy?",
        event_id=name,
    )
    ticket = await core.accept(incoming, {})
    await core.handle(incoming, TimedReplier(), ticket)


async def main(count: int) -> None:
    async with stand_in() as tokmodel, bench_core(tokmodel.url) as core:
        await tokmodel.set_latency(0.2)
        for n in range(5):
            await _ask(core, f"warm{n}")
        await asyncio.gather(*(_ask(core, f"b{n}") for n in range(count)))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

"""`python -m bench.context_read N`: N context reads of a thread of 130 stored turns, as an
answer does them (the read ahead, the older pages, `build_context`), after 3 to warm up. For
counting instructions, which a busy machine does not change:

    valgrind --tool=callgrind python -m bench.context_read 0
    valgrind --tool=callgrind python -m bench.context_read 40

(the `python` binary itself, not a pyenv shim); the difference of the two totals ÷ 40 is one
read's instructions, SQLite's thread included."""

from __future__ import annotations

import asyncio
import sys
import types
from typing import Any

from adapters.slack import translate
from bench.adapter_figures import SLACK_DEFAULTS
from bench.harness import bench_core, stand_in
from bench.mention_figures import _seed_thread
from bot.conversation import build_context
from bot.domain import Turn, TurnKind, TurnRole, TurnStatus
from bot.handlers import chat


async def main(count: int) -> None:
    async with stand_in() as tokmodel, bench_core(tokmodel.url) as core:
        thread_ts = "1700000000.000001"
        await _seed_thread(core.store, "C0THREAD", thread_ts, 130)
        key = translate.conversation_key(SLACK_DEFAULTS.team_id, "C0THREAD", thread_ts)
        inv: Any = types.SimpleNamespace(core=core, key=key)
        budget = core.settings.context_budget_tokens
        question = Turn(
            0, TurnRole.USER, TurnKind.TEXT, "How do we deploy?", "U0ALICE", "Alice",
            TurnStatus.OK, 0,
        )  # fmt: skip
        for _ in range(count + 3):
            read = await chat._read_context(core, key, "U0ALICE", with_budget=True)
            turns = await chat._recent_turns(inv, budget, [*read.older, question])
            build_context(read.channel.persona, turns, budget_tokens=budget, summary=None)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

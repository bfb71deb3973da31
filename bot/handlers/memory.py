"""/memory (team memory on or off in a channel, and forgetting it) and /recall (what the
channel said, found by the database's full-text index and ordered by TokModel's rerank)."""

from __future__ import annotations

from bot.commands import Invocation
from bot.errors import UserError
from bot.memory import query_words

EMPTY_RECALL = "Tell me what to look for, e.g. `/recall deploy window`."
MEMORY_USAGE = "Use `/memory` to see it, or (admins) `/memory on`, `/memory off`, `/memory forget`."
OFF_HINT = (
    "\n_(Team memory is off here, so only conversations with me are searched; admins can "
    "turn it on with `/memory on`.)_"
)


async def memory(inv: Invocation) -> None:
    wanted = inv.text.strip().lower()
    mem = inv.core.memory
    if not wanted:
        on, count = await mem.enabled(inv.key), await mem.count(inv.key)
        state = "on" if on else "off"
        await inv.reply(
            f"🧠 Team memory is {state} here: {count:,} message(s) of this channel remembered. "
            "Admins: `/memory on|off`, `/memory forget`."
        )
        return
    if wanted not in ("on", "off", "forget"):
        raise UserError(MEMORY_USAGE)
    if wanted == "forget":
        inv.require_admin("make me forget this channel's messages")
        deleted = await mem.forget(inv.key)
        await inv.reply(f"🧹 Forgot {deleted:,} remembered message(s) of this channel.")
        return
    inv.require_admin("turn team memory on or off")
    await mem.switch(inv.key, wanted == "on", by=inv.author.id)
    if wanted == "on":
        await inv.reply(
            "🧠 Team memory is on here: from now on I keep this channel's messages (people's, "
            "not bots'; with author, time and link) so `/recall` and my answers can find them. "
            "Edits and deletions follow. `/memory off` stops; `/memory forget` deletes them."
        )
    else:
        await inv.reply(
            "🧠 Team memory is off here: I keep no new messages. What I kept stays until "
            "`/memory forget`."
        )


async def recall(inv: Invocation) -> None:
    query = inv.text.strip()
    if not query:
        raise UserError(EMPTY_RECALL)
    core = inv.core
    if not query_words(query) and not await core.memory.searches_meaning():
        raise UserError("Those words are too common to search for; try a more specific one.")
    found = await core.memory.recall(
        inv.key, query, limit=core.settings.memory_recalled, user_id=inv.author.id
    )
    shown = query if len(query) <= 80 else query[:79] + "…"
    hint = "" if await core.memory.enabled(inv.key) else OFF_HINT
    if not found:
        await inv.reply(f"🔎 Nothing remembered here matches «{shown}».{hint}")
        return
    lines = [f"🔎 What this channel said about «{shown}»:"]
    lines += [f"{i}. {r.source()}: {r.text}" for i, r in enumerate(found, 1)]
    await inv.reply("\n".join(lines) + hint)

"""/summarize [24h|7d|thread]: a summary of what was said in the channel (its threads
included) over a span, or in the current thread, from the stored turns."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from bot.commands import Invocation
from bot.conversation import usable_turns
from bot.domain import ThreadReader, Turn
from bot.errors import UserError
from bot.handlers.chat import THREAD_MESSAGES, adopt_thread
from bot.summarizer import turn_line

USAGE = "/summarize [24h|7d|thread]"
DEFAULT_SPAN = "24h"
#: The longest span asked for: a month.
MAX_SPAN_SECONDS = 31 * 86400
#: Turns read for one summary (the newest, when the span holds more).
MAX_TURNS = 2000
_SPAN = re.compile(r"(\d{1,4})\s*([hd])")
_UNITS = {"h": 3600, "d": 86400}

BAD_SPAN = (
    "I can summarize a span like `24h` or `7d` (up to 31 days), or `thread` (the thread "
    "this is in): `" + USAGE + "`."
)
NOT_IN_THREAD = (
    "`/summarize thread` works inside a thread (where slash commands can't be used, mention me "
    "there: `@tokbot /summarize thread`). Here, try `/summarize 24h` for the channel."
)


def parse_span(text: str) -> int | None:
    """Seconds of the span in `text` ("24h", "7d"; "" is 24h), None for "thread"; raise
    UserError for anything else."""
    wanted = text.strip().lower() or DEFAULT_SPAN
    if wanted == "thread":
        return None
    match = _SPAN.fullmatch(wanted)
    if match is None:
        raise UserError(BAD_SPAN)
    seconds = int(match[1]) * _UNITS[match[2]]
    if not 0 < seconds <= MAX_SPAN_SECONDS:
        raise UserError(BAD_SPAN)
    return seconds


async def summarize(inv: Invocation) -> None:
    seconds = parse_span(inv.text)
    if seconds is None:
        turns, what = await _thread_turns(inv), "this thread"
    else:
        since = time.time() - seconds
        stored = await inv.core.store.summaries.channel_turns(inv.key, since=since, limit=MAX_TURNS)
        turns = [c.turn for c in stored]
        what = f"this channel over the last {inv.text.strip().lower() or DEFAULT_SPAN}"
    lines = [_line(turn) for turn in usable_turns(turns)]
    if not lines:
        await inv.reply(f"📝 Nothing was said in {what} that I know of.", private=True)
        return
    channel = await inv.core.store.channel_settings(inv.key)
    model = channel.model or inv.core.settings.chat_model
    summary = await inv.core.summarizer.summarize(lines, model=model)
    await inv.core.record_usage(inv, model=model, usage=summary.usage)
    header = f"📝 **Summary of {what}** ({len(lines)} message{'s' if len(lines) != 1 else ''})"
    text = f"{header}\n{summary.text}"
    if len(text) <= inv.replier.max_message_length:
        await inv.show(text)
        return
    # Too long for one message: new messages carry it (an edit can't continue in more).
    if (notice := inv.take_notice()) is not None:
        await inv.replier.edit(notice[0], inv.core.scrub(header))
    await inv.reply(text)


async def _thread_turns(inv: Invocation) -> list[Turn]:
    """The thread's stored turns; a thread not stored yet is read from the platform first."""
    if not inv.key.thread:
        raise UserError(NOT_IN_THREAD)
    store = inv.core.store
    turns = await store.history(inv.key, MAX_TURNS)
    if not turns and getattr(inv.replier, "in_existing_thread", False):
        if isinstance(inv.replier, ThreadReader):
            await adopt_thread(inv, inv.replier)
            turns = await store.history(inv.key, THREAD_MESSAGES * 2)
    return turns


def _line(turn: Turn) -> str:
    when = datetime.fromtimestamp(turn.created_at, UTC).strftime("%b %d %H:%M")
    return f"[{when}] {turn_line(turn)}"

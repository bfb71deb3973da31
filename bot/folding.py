"""Long conversations fold, they don't forget: once a conversation's turns outgrow the context
budget, its oldest turns are folded into a running summary, stored as a turn of kind "summary"
(`Store.summaries`), which the next answers see before the turns after it.

Folding runs in the background after an answer, so it never delays or fails one; when it
fails, answers go on as before (the oldest turns drop out of the context), logged once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bot.conversation import estimate_tokens, fills_budget, usable_turns
from bot.domain import BOT_AUTHOR, ConversationKey, Turn
from bot.store import Store
from bot.store.summaries import StoredSummary
from bot.summarizer import Summarizer, turn_line
from bot.tasks import drain_tasks

log = logging.getLogger(__name__)

#: Turns read for one fold; a longer unfolded history is folded over several answers.
MAX_FOLD_TURNS = 2000
#: Seconds `drain` waits by default for folds in progress before cancelling them (they are
#: redone after a later answer); `tokbot run` gives them its one deadline, TOKBOT_DRAIN_SECONDS.
DRAIN_SECONDS = 7.0
SUMMARY_SO_FAR = "Summary of the conversation before this point: "


class Folding:
    """Folds conversations in background tasks, one at a time per conversation."""

    def __init__(self, store: Store, summarizer: Summarizer, *, budget_tokens: int) -> None:
        self._store = store
        self._summarizer = summarizer
        self._budget = budget_tokens
        self._tasks: dict[ConversationKey, asyncio.Task[None]] = {}
        self._failure_logged = False

    def outgrown(self, turns: Sequence[Turn], summary: StoredSummary | None) -> bool:
        """Whether the context's turns after the summary fill the budget (some no longer fit)."""
        return fills_budget(usable_turns(turns, summary), self._budget)

    def after_answer(
        self,
        key: ConversationKey,
        model: str,
        turns: Sequence[Turn],
        summary: StoredSummary | None,
    ) -> None:
        """Start folding `key` in the background if its context (`turns`, after `summary`)
        has outgrown the budget and no fold of it is running."""
        if key in self._tasks or not self.outgrown(turns, summary):
            return
        task = asyncio.create_task(self._fold_quietly(key, model), name=f"fold {key}")
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    async def drain(self, timeout: float = DRAIN_SECONDS) -> None:
        """Let folds in progress finish (at shutdown, beside the answers in flight); those still
        running after `timeout` are cancelled (their conversations fold again after a later
        answer)."""
        await drain_tasks(self._tasks.values(), timeout)

    async def _fold_quietly(self, key: ConversationKey, model: str) -> None:
        try:
            await self.fold(key, model)
        except Exception as exc:
            # Answers go on without the summary (the oldest turns drop out, as before).
            level = logging.DEBUG if self._failure_logged else logging.WARNING
            self._failure_logged = True
            log.log(level, "could not fold a long conversation: %s", type(exc).__name__)

    async def fold(self, key: ConversationKey, model: str) -> bool:
        """Fold the oldest turns after the newest summary into a new summary, keeping the newest
        half a budget of turns out of it; return whether a summary was stored."""
        summary = await self._store.summaries.latest(key)
        after = summary.covers_turn_id if summary is not None else 0
        turns = await self._store.summaries.turns_after(key, after, MAX_FOLD_TURNS)
        usable = usable_turns(turns, summary)
        folded = usable if len(turns) == MAX_FOLD_TURNS else _older_half(usable, self._budget)
        if not folded:
            return False
        lines = [SUMMARY_SO_FAR + summary.turn.content] if summary is not None else []
        lines += [turn_line(turn) for turn in folded]
        result = await self._summarizer.summarize(lines, model=model)
        if not result.text.strip():
            return False
        stored = await self._store.summaries.add(
            key, result.text.strip(), covers_turn_id=folded[-1].id, model=model
        )
        await self._store.record_usage(
            key, user_id=BOT_AUTHOR.id, command="fold", model=model, usage=result.usage
        )
        log.info("folded %d turn(s) into a summary (%d request(s))", len(folded), result.requests)
        return stored is not None


def _older_half(turns: list[Turn], budget_tokens: int) -> list[Turn]:
    """The turns before the newest ones that fill half the budget (those stay as they are)."""
    room = budget_tokens // 2
    keep = len(turns)
    while keep > 0 and room - estimate_tokens(turns[keep - 1].content) >= 0:
        keep -= 1
        room -= estimate_tokens(turns[keep].content)
    return turns[:keep]

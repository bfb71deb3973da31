"""/ask (streamed, with the conversation's history) and /forget."""

from __future__ import annotations

import asyncio
import logging

from bot.commands import Invocation
from bot.conversation import (
    FIRST_PAGE,
    MAX_CONTEXT_TURNS,
    build_context,
    estimate_tokens,
    fills_budget,
)
from bot.domain import BOT_AUTHOR, Turn, TurnKind, TurnRole, TurnStatus
from bot.errors import UserError
from bot.streaming import StreamRenderer
from bot.tokmodel.errors import TokModelError
from bot.tokmodel.types import ChatMessage, Usage
from bot.wording import CUT_OFF_MARK, describe_tokmodel_error

log = logging.getLogger(__name__)

EMPTY_ASK = "Ask me something, e.g. `/ask what changed in the last release?`"


async def ask(inv: Invocation) -> None:
    prompt = inv.text.strip()
    if not prompt:
        raise UserError(EMPTY_ASK)
    core, settings = inv.core, inv.core.settings
    if len(prompt) > settings.max_prompt_chars:
        # Keep what was typed (not lost), but out of the context: it was never asked.
        await core.store.add_turn(
            inv.key,
            role=TurnRole.USER,
            kind=TurnKind.TEXT,
            content=prompt,
            author=inv.author,
            status=TurnStatus.FAILED,
            error="prompt too long",
            platform_message_id=inv.incoming.message_id,
        )
        raise UserError(
            f"That question is {len(prompt):,} characters long; the limit is "
            f"{settings.max_prompt_chars:,}. Please shorten it (or attach a summary)."
        )
    async with core.conversation(inv.key):
        user_turn = await core.store.add_turn(
            inv.key,
            role=TurnRole.USER,
            kind=TurnKind.TEXT,
            content=prompt,
            author=inv.author,
            platform_message_id=inv.incoming.message_id,
        )
        await answer(inv, user_turn)


async def answer(inv: Invocation, user_turn: int) -> None:
    """Stream TokModel's answer to the conversation so far; the caller holds its lock."""
    core, settings, store = inv.core, inv.core.settings, inv.core.store
    channel = await store.channel_settings(inv.key)
    model = channel.model or settings.chat_model
    turns = await _recent_turns(inv, settings.context_budget_tokens)
    messages = build_context(channel.persona, turns, budget_tokens=settings.context_budget_tokens)
    answer_turn = await store.add_turn(
        inv.key,
        role=TurnRole.ASSISTANT,
        kind=TurnKind.TEXT,
        content="",
        author=BOT_AUTHOR,
        status=TurnStatus.PENDING,
        model=model,
    )
    renderer = StreamRenderer(
        inv.replier,
        placeholder=inv.replier.stream_placeholder,
        interval=max(settings.stream_edit_interval, inv.replier.edit_interval),
    )
    usage: Usage | None = None
    finished = False
    try:
        await renderer.start()
        async for delta in core.tokmodel.chat_stream(messages, model):
            renderer.feed(core.scrub(delta.text))
            usage = delta.usage or usage
        text = renderer.text
        await renderer.finish("" if text.strip() else "_(TokModel returned an empty answer)_")
        finished = True
    except TokModelError as exc:
        inv.tokmodel_failed(exc)
        partial = renderer.text
        friendly = describe_tokmodel_error(exc, model=model)
        await renderer.finish((CUT_OFF_MARK + "\n" if partial.strip() else "") + friendly)
        status = TurnStatus.INTERRUPTED if partial.strip() else TurnStatus.FAILED
        error = f"{type(exc).__name__} ({exc.status})" if exc.status else type(exc).__name__
        await store.update_turn(answer_turn, content=partial, status=status, error=error)
        await store.update_turn(user_turn, error=error)
        finished = True
        return
    finally:
        if not finished:
            # Cancelled (shutdown) or a bug: keep what was shown, marked as cut off.
            await asyncio.shield(
                store.update_turn(
                    answer_turn,
                    content=renderer.text,
                    status=TurnStatus.INTERRUPTED if renderer.text else TurnStatus.FAILED,
                    error="interrupted",
                )
            )
    ids = renderer.message_ids
    await store.update_turn(
        answer_turn,
        content=text,
        status=TurnStatus.OK,
        platform_message_id=ids[-1] if ids else None,
    )
    await core.record_usage(inv, model=model, usage=usage or _estimated_usage(messages, text))


async def _recent_turns(inv: Invocation, budget_tokens: int) -> list[Turn]:
    """Enough of the newest turns to fill the budget, read in growing pages, so a long history
    costs no more than a short one."""
    turns: list[Turn] = []
    page = FIRST_PAGE
    while True:
        before = turns[0].id if turns else None
        older = await inv.core.store.context_turns(inv.key, page, before_id=before)
        turns = older + turns
        if len(older) < page or len(turns) >= MAX_CONTEXT_TURNS:
            return turns
        if fills_budget(turns, budget_tokens):
            return turns
        page = min(page * 2, MAX_CONTEXT_TURNS - len(turns))


def _estimated_usage(messages: list[ChatMessage], text: str) -> Usage:
    # TokModel's stream may carry no usage; an estimate keeps /usage meaningful.
    prompt = sum(estimate_tokens(m.content) for m in messages)
    completion = estimate_tokens(text)
    return Usage(prompt, completion, prompt + completion)


async def forget(inv: Invocation) -> None:
    async with inv.core.conversation(inv.key):
        await inv.core.store.forget(inv.key)
    await inv.reply(
        "🧹 Fresh start: I'll answer without what was said here before (nothing was deleted)."
    )

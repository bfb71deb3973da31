"""/ask (streamed, with the conversation's history) and /forget."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from bot.commands import Invocation
from bot.conversation import (
    FIRST_PAGE,
    MAX_CONTEXT_TURNS,
    build_context,
    estimate_tokens,
    fills_budget,
)
from bot.domain import (
    BOT_AUTHOR,
    AnswerControls,
    ThreadReader,
    Turn,
    TurnKind,
    TurnRole,
    TurnStatus,
)
from bot.errors import UserError
from bot.handlers.attached import file_attachments, read_attached
from bot.media import is_image_attachment
from bot.streaming import StreamRenderer
from bot.text import clean_text
from bot.tokmodel.errors import TokModelError
from bot.tokmodel.types import ChatDelta, ChatMessage, Usage
from bot.wording import CUT_OFF_MARK, describe_tokmodel_error

log = logging.getLogger(__name__)

#: Seconds an interrupted answer may take to show its "cut off" mark.
CUT_OFF_SHOW_S = 2.0
INTERRUPTED_MARK = CUT_OFF_MARK + "\n_(I was interrupted; ask again for the rest.)_"
#: Ends an answer its asker stopped.
STOPPED_MARK = "\n\n_⏹️ (stopped)_"

#: How many of a thread's earlier messages are read when the bot is first called into it.
THREAD_MESSAGES = 50

EMPTY_ASK = "Ask me something, e.g. `/ask what changed in the last release?`"


async def ask(inv: Invocation) -> None:
    prompt = inv.text.strip()
    unread = _attachments_note(inv)
    if not prompt and not file_attachments(inv.incoming.attachments):
        raise UserError(unread or EMPTY_ASK)
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
    files = await read_attached(inv)  # text files, logs, PDFs: read into the question
    notes = [*files.notes, *([unread] if unread else [])]
    if not prompt and not files.read:
        raise UserError("\n".join(notes))
    await answer(inv, files.question(prompt))
    if notes:
        await inv.reply("\n".join(notes))


def _attachments_note(inv: Invocation) -> str | None:
    """What to say about pictures sent with a question (files are read: `read_attached`)."""
    if any(is_image_attachment(a) for a in inv.incoming.attachments):
        return (
            "🖼️ I can't look at pictures in a question. To change this one, send it again with "
            "`imagine` and the change, e.g. `imagine make it watercolour` (or `imagine` alone "
            "for a variation)."
        )
    return None


async def answer(inv: Invocation, prompt: str, *, kind: TurnKind = TurnKind.TEXT) -> str | None:
    """Store `prompt` (typed, or a voice message's transcript: `kind`) and stream TokModel's
    answer to the conversation so far (the core runs one command at a time per conversation, so
    each answer sees the one before); return the answer, or None when it failed. People wait on
    one database read before TokModel is asked: the question and the pending answer are stored
    while TokModel thinks, the answer and its usage after it is shown (`Store.answer_context`,
    `Store.add_exchange`, `Store.finish_answer`)."""
    core, settings, store = inv.core, inv.core.settings, inv.core.store
    channel, older = await store.answer_context(inv.key, limit=FIRST_PAGE - 1)
    # (getattr first: isinstance against a runtime Protocol costs ~8 µs on Python 3.11)
    if not older and getattr(inv.replier, "in_existing_thread", False):
        if isinstance(inv.replier, ThreadReader):
            older = await _adopt_thread(inv, inv.replier)
    model = channel.model or settings.chat_model
    author = inv.author
    question = Turn(
        0, TurnRole.USER, kind, prompt, author.id, author.name, TurnStatus.OK, 0
    )  # not stored yet
    turns = await _recent_turns(inv, settings.context_budget_tokens, [*older, question])
    messages = build_context(channel.persona, turns, budget_tokens=settings.context_budget_tokens)
    stored = asyncio.ensure_future(
        store.add_exchange(
            inv.key,
            prompt=prompt,
            author=author,
            platform_message_id=inv.incoming.message_id,
            model=model,
            kind=kind,
        )
    )
    stream = core.tokmodel.chat_stream(messages, model)
    first = asyncio.ensure_future(anext(stream, None))  # TokModel is asked now
    try:
        user_turn, answer_turn = await stored
    except BaseException:
        await _abandon(first)
        raise

    async def save_shown(text: str) -> None:
        # What people already see survives a crash (SIGKILL) with the turn, marked interrupted.
        if not await store.save_shown(answer_turn, text):
            core.answers.stop(answer_turn)  # its asker stopped it through another replica

    renderer = StreamRenderer(
        inv.replier,
        placeholder=inv.replier.stream_placeholder,
        interval=max(settings.stream_edit_interval, inv.replier.edit_interval),
        on_shown=save_shown,
        redactor=core.redactor,
        notice=inv.take_notice(),
        controls=AnswerControls(answer_turn, author.id, streaming=True),
    )
    finished = False
    try:
        try:  # the placeholder is posted while TokModel thinks, too
            await renderer.start()
        except BaseException:
            await _abandon(first)
            raise
        text, status, usage = await _show_answer(inv, renderer, first, stream, answer_turn)
        finished = True
    except TokModelError as exc:
        inv.tokmodel_failed(exc)
        partial = renderer.text
        friendly = describe_tokmodel_error(exc, model=model)
        suffix = (CUT_OFF_MARK + "\n" if partial.strip() else "") + friendly
        await renderer.finish(suffix, complete=False, feedback=False)
        status = TurnStatus.INTERRUPTED if partial.strip() else TurnStatus.FAILED
        error = f"{type(exc).__name__} ({exc.status})" if exc.status else type(exc).__name__
        await store.update_turn(answer_turn, content=partial, status=status, error=error)
        await store.update_turn(user_turn, error=error)
        finished = True
        return None
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
            await _show_cut_off(renderer)
    ids = renderer.message_ids
    usage = usage or _estimated_usage(messages, text)
    core.count_usage(usage)
    await store.finish_answer(
        answer_turn,
        content=text,
        platform_message_id=ids[-1] if ids else None,
        key=inv.key,
        user_id=inv.author.id,
        command=inv.incoming.command,
        model=model,
        usage=usage,
        status=status,
    )
    # (alerts admins past 80 %)
    await core.budgets.after_usage(inv.key, inv.author.id, budgeted=inv.budgeted)
    return text


async def _show_answer(
    inv: Invocation,
    renderer: StreamRenderer,
    first: asyncio.Future[ChatDelta | None],
    stream: AsyncIterator[ChatDelta],
    answer_turn: int,
) -> tuple[str, TurnStatus, Usage | None]:
    """Show TokModel's answer as it streams, until it ends or its asker stops it (the Stop
    button: `Core.stop_answer` cancels the reading); return the text to store, its status, and
    TokModel's usage if it said."""
    reading = asyncio.ensure_future(_read(first, stream, renderer))
    with inv.core.answers.running(answer_turn, inv.author.id, reading) as running:
        try:
            usage = await reading
        except asyncio.CancelledError:
            if not running.stop_requested or _cancelled(asyncio.current_task()):
                raise  # shutting down: the caller marks it cut off
            await _abandon(first)  # (if the stop came before reading began)
            await _close(stream)
            shown = renderer.text
            await renderer.finish(STOPPED_MARK, complete=False)
            return shown, TurnStatus.STOPPED, None
    text = renderer.answer
    await renderer.finish("" if text.strip() else "_(TokModel returned an empty answer)_")
    return text, TurnStatus.OK, usage


async def _read(
    first: asyncio.Future[ChatDelta | None],
    stream: AsyncIterator[ChatDelta],
    renderer: StreamRenderer,
) -> Usage | None:
    """Feed TokModel's answer to the renderer until it ends; return its usage, if it said."""
    usage: Usage | None = None
    delta = await first
    while delta is not None:
        renderer.feed(delta.text)  # scrubbed as a whole by the renderer, never per piece
        usage = delta.usage or usage
        delta = await anext(stream, None)
    return usage


def _cancelled(task: asyncio.Task[Any] | None) -> bool:
    """Whether `task` itself is being cancelled (shutdown), not only something it awaits."""
    return task is not None and task.cancelling() > 0


async def _close(stream: AsyncIterator[ChatDelta]) -> None:
    """End TokModel's stream early (its connection is released, the answer not read on)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


async def _show_cut_off(renderer: StreamRenderer) -> None:
    """Mark what people already see as cut off (briefly: the process may be stopping)."""
    if not renderer.message_ids:
        return  # nothing shown: the core's apology (or nothing, at shutdown) says enough
    try:
        finishing = renderer.finish(INTERRUPTED_MARK, complete=False, feedback=False)
        await asyncio.wait_for(asyncio.shield(finishing), CUT_OFF_SHOW_S)
    except asyncio.CancelledError:
        pass  # cancelled again: stopping for good
    except Exception:
        log.warning("could not mark the interrupted answer", exc_info=True)


async def _adopt_thread(inv: Invocation, thread: ThreadReader) -> list[Turn]:
    """Called into a thread people started without the bot: store what they said before (once:
    not after a /forget, which leaves history behind) and return it as the context."""
    store = inv.core.store
    if await store.history(inv.key, 1):
        return []
    earlier = await thread.earlier_messages(THREAD_MESSAGES)
    for message in earlier:
        text = inv.core.scrub(clean_text(message.text)).strip()
        if not text:
            continue
        await store.add_turn(
            inv.key,
            role=TurnRole.ASSISTANT if message.by_this_bot else TurnRole.USER,
            kind=TurnKind.TEXT,
            content=text[: inv.core.settings.max_prompt_chars],
            author=BOT_AUTHOR if message.by_this_bot else message.author,
            platform_message_id=message.message_id,
        )
    if earlier:
        log.info("adopted %d earlier message(s) of the thread", len(earlier))
    return await store.context_turns(inv.key, FIRST_PAGE - 1)


async def _abandon(first: asyncio.Future[ChatDelta | None]) -> None:
    """Cancel TokModel's answer when it can no longer be shown or kept."""
    first.cancel()
    with contextlib.suppress(BaseException):
        await first


async def _recent_turns(inv: Invocation, budget_tokens: int, first: list[Turn]) -> list[Turn]:
    """Enough of the newest turns to fill the budget, read in growing pages (`first` is the
    newest FIRST_PAGE, the question last), so a long history costs no more than a short one."""
    turns, older, page = first, first, FIRST_PAGE
    while True:
        if len(older) < page or len(turns) >= MAX_CONTEXT_TURNS:
            return turns
        if fills_budget(turns, budget_tokens):
            return turns
        page = min(page * 2, MAX_CONTEXT_TURNS - len(turns))
        older = await inv.core.store.context_turns(inv.key, page, before_id=turns[0].id)
        turns = older + turns


def _estimated_usage(messages: list[ChatMessage], text: str) -> Usage:
    # TokModel's stream may carry no usage; an estimate keeps /usage meaningful.
    prompt = sum(estimate_tokens(m.content) for m in messages)
    completion = estimate_tokens(text)
    return Usage(prompt, completion, prompt + completion)


async def forget(inv: Invocation) -> None:
    await inv.core.store.forget(inv.key)
    await inv.reply(
        "🧹 Fresh start: I'll answer without what was said here before (nothing was deleted)."
    )

"""/ask (streamed, with the conversation's history) and /forget."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.commands import Invocation
from bot.conversation import (
    FIRST_PAGE,
    MAX_CONTEXT_TURNS,
    build_context,
    estimate_tokens,
    fills_budget,
    turn_to_message,
)
from bot.domain import (
    BOT_AUTHOR,
    AnswerControls,
    ConversationKey,
    Incoming,
    ThreadReader,
    Turn,
    TurnKind,
    TurnRole,
    TurnStatus,
)
from bot.errors import UserError
from bot.handlers import pictures
from bot.handlers.attached import file_attachments, read_attached
from bot.memory import Recalled, context_note, sources_line
from bot.sight import has_pictures
from bot.store import ChannelSettings
from bot.store.pictures import Picture
from bot.store.summaries import StoredSummary, latest_found
from bot.streaming import StreamRenderer
from bot.text import clean_text
from bot.tokmodel.errors import BadRequest, NotFound, TokModelError
from bot.tokmodel.types import ChatDelta, ChatMessage, Usage
from bot.wording import CUT_OFF_MARK, describe_tokmodel_error

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

#: Seconds an interrupted answer may take to show its "cut off" mark.
CUT_OFF_SHOW_S = 2.0
INTERRUPTED_MARK = CUT_OFF_MARK + "\n_(I was interrupted; ask again for the rest.)_"
#: Ends an answer its asker stopped.
STOPPED_MARK = "\n\n_⏹️ (stopped)_"

#: How many of a thread's earlier messages are read when the bot is first called into it.
THREAD_MESSAGES = 50

EMPTY_ASK = "Ask me something, e.g. `/ask what changed in the last release?`"
#: Stored as the question of pictures sent without one.
PICTURES_ONLY = "(pictures only, no question)"
#: Ends an answer the vision model gave because the channel's model refused the pictures.
VISION_NOTE = "\n\n_(`{model}` can't look at pictures, so `{vision}` looked at them.)_"


async def ask(inv: Invocation) -> None:
    prompt = inv.text.strip()
    images = pictures.image_attachments(inv)
    if not prompt and not images and not file_attachments(inv.incoming.attachments):
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
    files = await read_attached(inv)  # text files, logs, PDFs: read into the question
    if not images:
        if not prompt and not files.read:
            raise UserError("\n".join(files.notes))
        await answer(inv, files.question(prompt))
        notes = files.notes
    else:
        # The pictures are held in memory until the answer is done: so is their budget share.
        async with core.downloads.hold(pictures.reserve(inv, images)):
            seen = await pictures.take_pictures(inv, images)
            notes = [*seen.refused, *files.notes]
            if not prompt and not seen.taken and not files.read:
                raise UserError("\n".join(notes))
            question = files.question(prompt) if prompt or files.read else PICTURES_ONLY
            await answer(inv, question, seen.taken)
    if notes:
        await inv.reply("\n".join(notes))


async def answer(
    inv: Invocation,
    prompt: str,
    taken: Sequence[Picture] = (),
    *,
    kind: TurnKind = TurnKind.TEXT,
) -> str | None:
    """Store `prompt` (typed, or a voice message's transcript: `kind`) and stream TokModel's
    answer to the conversation so far (the core runs one command at a time per conversation, so
    each answer sees the one before); return the answer, or None when it failed. People wait on
    one database read before TokModel is asked: the question and the pending answer are stored
    while TokModel thinks, the answer and its usage after it is shown (`Store.answer_context`,
    `Store.add_exchange`, `Store.finish_answer`). `taken`: the question's pictures, sent with it
    and kept with its turn (`bot.handlers.pictures`)."""
    core, settings, store = inv.core, inv.core.settings, inv.core.store
    channel, older, summary = await _context_within_budget(inv)
    # (getattr first: isinstance against a runtime Protocol costs ~8 µs on Python 3.11)
    if not older and getattr(inv.replier, "in_existing_thread", False):
        if isinstance(inv.replier, ThreadReader):
            older = await adopt_thread(inv, inv.replier)
    model = channel.model or settings.chat_model
    author = inv.author
    kind = TurnKind.PICTURES if taken else kind
    question = Turn(
        0, TurnRole.USER, kind, prompt, author.id, author.name, TurnStatus.OK, 0
    )  # not stored yet
    turns = await _recent_turns(inv, settings.context_budget_tokens, [*older, question])
    attached = await pictures.context_pictures(inv, turns, taken)
    messages = build_context(
        channel.persona,
        turns,
        budget_tokens=settings.context_budget_tokens,
        pictures=attached,
        summary=summary,
    )
    recalled = await _recall(inv, prompt, turns, messages)
    if recalled:  # (after the persona: the question stays last)
        messages.insert(1, ChatMessage("system", context_note(recalled)))
    # TokModel is asked first: its request is what people wait on; the INSERT is not.
    asked = _ask(inv, messages, model)
    first = asyncio.ensure_future(anext(asked.stream, None))
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
    try:
        user_turn, answer_turn = await stored
        await pictures.picture_store(inv).add(user_turn, taken)
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
        sources = sources_line(recalled) if recalled else ""
        text, status, usage = await _show_answer(inv, renderer, first, asked, answer_turn, sources)
        finished = True
    except TokModelError as exc:
        inv.tokmodel_failed(exc)
        partial = renderer.text
        friendly = describe_tokmodel_error(exc, model=asked.model)
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
        model=asked.model,
        usage=usage,
        status=status,
    )
    # (alerts admins past 80 %)
    await core.budgets.after_usage(
        inv.key, inv.author.id, budgeted=inv.budgeted, seen=inv.budget_seen,
        tokens=usage.total_tokens,
    )  # fmt: skip
    core.folding.after_answer(inv.key, model, turns, summary)  # (in the background)
    return text


@dataclass(frozen=True)
class _ContextRead:
    """What `answer` reads first, in one trip (`_read_context`)."""

    key: ConversationKey
    user_id: str
    now: float
    channel: ChannelSettings
    older: list[Turn]
    summary: list[Any]
    standing: list[Any] | None  # the budgets' rows, when the budget check was due


async def _read_context(
    core: Core, key: ConversationKey, user_id: str, *, with_budget: bool
) -> _ContextRead:
    """In one read: the channel's settings, the newest turns (`Store.answer_context`), the
    conversation's running summary (a folded conversation's: `bot.folding`); and, with
    `with_budget`, where the budgets stand."""
    now = time.time()
    also = [core.store.summaries.latest_query(key)]
    if with_budget:
        also.append(core.budgets.standing_query(key, user_id, now=now))
    channel, older, (summary, *standing) = await core.store.answer_context_and(
        key, limit=FIRST_PAGE - 1, also=also
    )
    return _ContextRead(
        key, user_id, now, channel, older, summary, standing[0] if with_budget else None
    )


async def read_ahead(core: Core, incoming: Incoming) -> _ContextRead:
    """`/ask`'s first read, begun when the event is accepted (`CommandSpec.read_ahead`): the
    budgets are read with it unless the question has files (`Core._prepare`)."""
    with_budget = not incoming.attachments
    return await _read_context(core, incoming.key, incoming.author.id, with_budget=with_budget)


async def _context_within_budget(
    inv: Invocation,
) -> tuple[ChannelSettings, list[Turn], StoredSummary | None]:
    """`_read_context` (begun when the event was accepted, if it could be: `read_ahead`) and,
    when the budget check is still due (`Invocation.budget_due`), that check, raising
    BudgetExceeded past a budget before anything is stored or asked."""
    core, due, inv.budget_due = inv.core, inv.budget_due, None
    read = await _taken_ahead(inv)
    if read is None or (read.standing is None) != (due is None):
        read = await _read_context(core, inv.key, inv.author.id, with_budget=due is not None)
    if due is not None:
        assert read.standing is not None
        inv.budget_seen = core.budgets.check_found(
            inv.key, inv.author.id, read.standing, estimate=due, now=read.now
        )
        inv.budgeted = bool(inv.budget_seen)
    return read.channel, read.older, latest_found(read.summary)


async def _taken_ahead(inv: Invocation) -> _ContextRead | None:
    """The read begun ahead for this invocation, if any, it succeeded, and it is for it."""
    early, inv.read_ahead = inv.read_ahead, None
    if early is None:
        return None
    try:
        read = await early
    except Exception:  # (the read afresh reports a lasting failure)
        log.debug("the read ahead failed; reading again", exc_info=True)
        return None
    if not isinstance(read, _ContextRead) or (read.key, read.user_id) != (inv.key, inv.author.id):
        return None
    return read


@dataclass
class _Asked:
    """What TokModel is asked, by which model, on which stream: the vision model takes over when
    the channel's model refuses the pictures (`note` then says so under the answer)."""

    messages: list[ChatMessage]
    model: str
    stream: AsyncIterator[ChatDelta]
    note: str = ""


async def _show_answer(
    inv: Invocation,
    renderer: StreamRenderer,
    first: asyncio.Future[ChatDelta | None],
    asked: _Asked,
    answer_turn: int,
    sources: str = "",
) -> tuple[str, TurnStatus, Usage | None]:
    """Show TokModel's answer as it streams, until it ends or its asker stops it (the Stop
    button: `Core.stop_answer` cancels the reading); return the text to store, its status, and
    TokModel's usage if it said."""
    reading = asyncio.ensure_future(_read(inv, first, asked, renderer))
    with inv.core.answers.running(answer_turn, inv.author.id, reading) as running:
        try:
            usage = await reading
        except asyncio.CancelledError:
            if not running.stop_requested or _cancelled(asyncio.current_task()):
                raise  # shutting down: the caller marks it cut off
            await _abandon(first)  # (if the stop came before reading began)
            await _close(asked.stream)
            shown = renderer.text
            await renderer.finish(STOPPED_MARK, complete=False)
            return shown, TurnStatus.STOPPED, None
    text = renderer.answer
    await renderer.finish(
        asked.note + sources if text.strip() else "_(TokModel returned an empty answer)_"
    )
    return text, TurnStatus.OK, usage


async def _read(
    inv: Invocation,
    first: asyncio.Future[ChatDelta | None],
    asked: _Asked,
    renderer: StreamRenderer,
) -> Usage | None:
    """Feed TokModel's answer to the renderer until it ends; return its usage, if it said."""
    usage: Usage | None = None
    try:
        delta = await first
    except (BadRequest, NotFound) as exc:
        if not inv.core.sight.refused(asked.model, asked.messages, exc):
            raise
        vision = inv.core.sight.vision_model
        asked.note = VISION_NOTE.format(model=asked.model, vision=vision)
        asked.model = vision
        asked.stream = inv.core.tokmodel.chat_stream(asked.messages, vision)
        delta = await anext(asked.stream, None)
    while delta is not None:
        renderer.feed(delta.text)  # scrubbed as a whole by the renderer, never per piece
        usage = delta.usage or usage
        delta = await anext(asked.stream, None)
    return usage


def _ask(inv: Invocation, messages: list[ChatMessage], model: str) -> _Asked:
    """Ask `model`, or the vision model when `model` already refused pictures (`bot.sight`)."""
    sight, chat_stream = inv.core.sight, inv.core.tokmodel.chat_stream
    if not (has_pictures(messages) and sight.known_blind(model)):
        return _Asked(messages, model, chat_stream(messages, model))
    vision = sight.vision_model
    note = VISION_NOTE.format(model=model, vision=vision)
    return _Asked(messages, vision, chat_stream(messages, vision), note)


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


async def adopt_thread(inv: Invocation, thread: ThreadReader) -> list[Turn]:
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
    newest FIRST_PAGE, the question last), so a long history costs no more than a short one.
    Each page is at least twice the last, and as many turns as the budget's missing part
    holds at the sizes read so far (a quarter more): a history that fits the budget is
    usually read in one more trip, not in doubling pages (a 130-turn thread: 3 trips → 2)."""
    turns, older, page = first, first, FIRST_PAGE
    while True:
        if len(older) < page or len(turns) >= MAX_CONTEXT_TURNS:
            return turns
        used = sum(estimate_tokens(t.content) for t in turns)
        if used >= budget_tokens:  # (fills_budget)
            return turns
        wanted = int((budget_tokens - used) * len(turns) / used * 1.25) + 1
        page = min(max(page * 2, wanted), MAX_CONTEXT_TURNS - len(turns))
        older = await inv.core.store.context_turns(inv.key, page, before_id=turns[0].id)
        turns = older + turns


async def _recall(
    inv: Invocation, prompt: str, turns: list[Turn], messages: list[ChatMessage]
) -> list[Recalled]:
    """What the channel said that may answer `prompt` (and is not in the context `messages`
    already), when its memory is on or the history no longer fits the context (never failing
    the answer: without it, it goes on)."""
    core, budget = inv.core, inv.core.settings.context_budget_tokens
    try:
        if not (await core.memory.enabled(inv.key) or fills_budget(turns, budget)):
            return []
        sent = {m.content for m in messages}
        in_context = frozenset(t.content for t in turns if turn_to_message(t).content in sent)
        return await core.memory.recall(
            inv.key,
            prompt,
            limit=core.settings.memory_recalled,
            skip=in_context,
            user_id=inv.author.id,
        )
    except Exception:
        log.warning("recall failed; answering without it", exc_info=True)
        return []


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

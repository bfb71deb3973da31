"""Shows a streamed answer as it grows: one message edited in place at most once per interval,
continued in new messages when it outgrows the platform's limit."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

from bot.domain import (
    AnswerControls,
    NativeStream,
    NativeStreamer,
    Replier,
    streams_natively,
)
from bot.logs import SecretRedactor
from bot.text import split_message

log = logging.getLogger(__name__)

#: How long the first text waits before it is posted as a new message (no placeholder shown):
#: an answer that ends meanwhile is posted once, finished, instead of posted and then edited
#: (one platform round trip less after the last token; unnoticeable to people).
FIRST_POST_GRACE = 0.005


class StreamRenderer:
    """Feed it text as it arrives; it keeps the visible messages close behind.

    Edits run in a background task so a slow platform never stalls reading the stream, and the
    first text shows within one interval of arriving even if nothing follows it.

    Secrets are scrubbed from the whole text, never piece by piece (a model streams a key a few
    characters at a time), and while the answer grows, a tail that could be the start of a
    secret is held back until the next piece shows whether it is one.

    With `controls` (streaming ones), the message being written carries a Stop button while the
    answer streams, and the last message gets the feedback buttons when it is finished; messages
    the answer has grown out of carry none.

    A replier that streams natively (`NativeStreamer`) gets each message as appends instead of
    edits. An append can't be taken back, so only text that extends what was given is
    appended; should scrubbing ever change text already given, the message waits for the end
    and is then replaced as a whole (`Replier.edit`).
    """

    def __init__(
        self,
        replier: Replier,
        *,
        placeholder: str | None,
        interval: float,
        on_shown: Callable[[str], Awaitable[None]] | None = None,
        shown_interval: float = 1.0,
        redactor: SecretRedactor | None = None,
        notice: tuple[str, str] | None = None,
        controls: AnswerControls | None = None,
    ) -> None:
        self._replier = replier
        self._controls = controls
        self._redactor = redactor or SecretRedactor(())
        # A message already posted (id, text), e.g. "⏳ waiting": the answer replaces it.
        self._notice = notice
        # Told the visible text at most every `shown_interval` s (to save it against a crash).
        self._on_shown = on_shown
        self._shown_interval = shown_interval
        self._last_shown = 0.0
        self._placeholder = placeholder
        self._interval = interval
        self._limit = max(1, replier.max_message_length)
        self._raw = ""  # what TokModel sent, unscrubbed: never shown or stored as it is
        self._text = ""  # what may be shown: scrubbed (and, until finished, held back)
        # Whether `_text` is `_raw` scrubbed: scrubbing is done when the text is shown or asked
        # for (`text`), not per delta, which scanned the whole answer again for every piece.
        self._scrubbed = True
        self._frozen: list[str] = []  # ids of full messages, never edited again
        # The message being edited: id, shown text, its buttons.
        self._open: tuple[str, str, AnswerControls | None] | None = None
        self._dirty = asyncio.Event()
        self._last_edit = 0.0
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # Native streaming: the replier that offers it (None: post and edit), the open stream,
        # and what it was given (scrubbed; only ever extended).
        streamer = cast(NativeStreamer, replier) if streams_natively(replier) else None
        # (a wrapper offers `start_stream` whatever it wraps: `bot.inbox.repliers.Watched`)
        self._streamer = streamer if getattr(replier, "streams_natively", True) else None
        self._stream: NativeStream | None = None
        self._streamed = ""

    @property
    def text(self) -> str:
        """The answer so far as it may be shown or stored."""
        if not self._scrubbed:
            self._text = self._redactor.redact_unfinished(self._raw)
            self._scrubbed = True
        return self._text

    @property
    def answer(self) -> str:
        """The whole answer received, scrubbed (call when the stream has ended)."""
        return self._redactor.redact(self._raw)

    @property
    def message_ids(self) -> list[str]:
        return [*self._frozen, *([self._open[0]] if self._open else [])]

    async def start(self) -> None:
        if self._notice is not None:
            self._open = (*self._notice, None)
            self._last_edit = time.monotonic()
        elif self._placeholder is not None:
            posted = await self._replier.post(self._placeholder, controls=self._controls)
            self._open = (posted, self._placeholder, self._controls)
            self._last_edit = time.monotonic()
        self._flusher = asyncio.create_task(self._flush_loop())

    def feed(self, delta: str) -> None:
        if delta:
            self._raw += delta
            self._scrubbed = False
            self._dirty.set()

    async def finish(
        self, suffix: str = "", *, complete: bool = True, feedback: bool = True
    ) -> None:
        """Stop the background edits and show the whole text (plus `suffix`) for good;
        `complete=False`: the stream broke off, so a tail that may be part of a secret stays
        held back. `feedback`: the last message gets the feedback buttons (else none: e.g. an
        answer that failed)."""
        if self._flusher is not None:
            # Holding the lock, the flusher is never cancelled half-way through a post (the
            # message would exist but its id be lost, and the final render post it again).
            async with self._lock:
                self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        shown = self.answer if complete else self._redactor.redact_unfinished(self._raw)
        self._text, self._scrubbed = shown + suffix, True
        if not self._text.strip():
            self._text = "…"  # platforms refuse empty messages
        done = self._controls if feedback else None
        await self._render(dataclasses.replace(done, streaming=False) if done else None, final=True)

    async def _flush_loop(self) -> None:
        while True:
            await self._dirty.wait()
            wait = self._last_edit + self._interval - time.monotonic()
            if self._open is None and not self._frozen and self._streamer is None:
                wait = max(wait, FIRST_POST_GRACE)  # (`finish` cancels the wait)
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty.clear()
            try:
                await self._render(self._controls)
            except Exception:  # a failed edit must not end the stream; the final render retries
                log.warning("stream edit failed", exc_info=True)
            self._last_edit = time.monotonic()
            if (
                self._on_shown is not None
                and self._last_edit - self._last_shown >= self._shown_interval
            ):
                self._last_shown = self._last_edit
                try:
                    async with self._lock:  # `finish` never cancels it half-way
                        await self._on_shown(self.text)
                except Exception:
                    log.warning("could not save the answer so far", exc_info=True)

    async def _render(self, last: AnswerControls | None, *, final: bool = False) -> None:
        """Show the text; the last message carries `last`'s buttons, earlier ones none.
        `final`: the text is complete (native streams are stopped)."""
        async with self._lock:
            # The whole text, re-split: a piece may hold more than its share of the text (a code
            # block closed and reopened), and the pieces before the last never change.
            pieces = split_message(self.text, self._limit)[len(self._frozen) :]
            for index, piece in enumerate(pieces):
                controls = last if index == len(pieces) - 1 else None
                closing = final or index < len(pieces) - 1
                if self._open is None:
                    posted = await self._show_new(piece, controls, closing, final)
                    self._open = (posted, piece, controls)
                elif self._stream is not None:
                    await self._extend_stream(piece, controls, closing)
                    self._open = (self._open[0], piece, controls)
                elif (piece, controls) != self._open[1:]:
                    await self._replier.edit(self._open[0], piece, controls=controls)
                    self._open = (self._open[0], piece, controls)
                if index < len(pieces) - 1:
                    # A full message: freeze it; the rest continues in a new one.
                    self._frozen.append(self._open[0])
                    self._open = None

    async def _show_new(
        self, piece: str, controls: AnswerControls | None, closing: bool, final: bool
    ) -> str:
        """Post `piece` as a new message (streamed when the replier can); return its id. An
        answer complete before its first message showed (TokModel answered at once) is posted
        whole: one call where a stream takes two, each a round trip before the text is final."""
        if self._streamer is not None and final:
            whole = await self._streamer.post_whole(piece, controls=controls)
            if whole is not None:
                return whole
        elif self._streamer is not None:
            stream = await self._streamer.start_stream(piece, controls=controls)
            if stream is None:
                self._streamer = None  # not available: post and edit for the rest
            else:
                self._stream, self._streamed = stream, piece
                if closing:
                    await self._extend_stream(piece, controls, closing)
                return stream.message_id
        return await self._replier.post(piece, controls=controls)

    async def _extend_stream(
        self, piece: str, controls: AnswerControls | None, closing: bool
    ) -> None:
        """Append what `piece` adds to the open stream (and stop it, with the message's final
        `controls`, when `closing`)."""
        stream = self._stream
        assert stream is not None
        if piece.startswith(self._streamed):
            added = piece[len(self._streamed) :]
            if closing:
                await stream.stop(added, controls=controls)
                self._stream = None
            elif added:
                await stream.append(added)
            self._streamed = piece
        elif closing:
            # Scrubbing changed text already given (a longer secret completed): end the
            # stream, then show the message as it must read.
            await stream.stop()
            self._stream = None
            await self._replier.edit(stream.message_id, piece, controls=controls)

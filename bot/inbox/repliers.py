"""Repliers the inbox hands out: one that marks its event as answering at its first message,
and one for events answered where nobody sees (closed without a reply)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.domain import (
    AnswerControls,
    Attachment,
    NativeStream,
    OutgoingFile,
    PlatformHelp,
    Replier,
    streams_natively,
)


class Watched:
    """The replier of an event in line. Its first message is noted as it starts (`starting`:
    a cancellation from then on may have shown something), and once the platform has it
    (`on_screen`: the row is marked answering, so a crash does not answer it again, and the
    next in line may announce itself below it; not before, or its notice could land above)."""

    def __init__(
        self,
        inner: Replier,
        starting: Callable[[], None],
        on_screen: Callable[[], Awaitable[None]],
    ) -> None:
        self._inner = inner
        self._starting = starting
        self._on_screen: Callable[[], Awaitable[None]] | None = on_screen
        self.max_message_length = inner.max_message_length
        self.edit_interval = inner.edit_interval
        self.stream_placeholder = inner.stream_placeholder
        #: Whether `start_stream` may stream (the renderer's first post waits otherwise).
        self.streams_natively = streams_natively(inner)

    def __getattr__(self, name: str) -> Any:  # ThreadReader and adapter extras
        return getattr(self._inner, name)

    async def _first(self, action: Awaitable[Any]) -> Any:
        if self._on_screen is None:
            return await action
        on_screen, self._on_screen = self._on_screen, None
        self._starting()
        result = await action
        await on_screen()
        return result

    async def post(
        self, text: str, *, private: bool = False, controls: AnswerControls | None = None
    ) -> str:
        result: str = await self._first(self._inner.post(text, private=private, controls=controls))
        return result

    async def edit(
        self, message_id: str, text: str, *, controls: AnswerControls | None = None
    ) -> None:
        await self._first(self._inner.edit(message_id, text, controls=controls))

    async def upload(self, file: OutgoingFile, comment: str | None = None) -> None:
        await self._first(self._inner.upload(file, comment))

    async def start_stream(
        self, markdown: str, *, controls: AnswerControls | None = None
    ) -> NativeStream | None:
        """`bot.domain.NativeStreamer`, when the inner replier is one (else None: not
        available). A stream that did not start showed nothing: the post after it is first."""
        start = getattr(self._inner, "start_stream", None)
        if start is None:
            return None
        stream: NativeStream | None = await self._first_maybe(start(markdown, controls=controls))
        return stream

    async def post_whole(
        self, markdown: str, *, controls: AnswerControls | None = None
    ) -> str | None:
        """`bot.domain.NativeStreamer.post_whole`, when the inner replier has it."""
        post = getattr(self._inner, "post_whole", None)
        if post is None:
            return None
        posted: str | None = await self._first_maybe(post(markdown, controls=controls))
        return posted

    async def _first_maybe(self, action: Awaitable[Any]) -> Any:
        """Like `_first`, for an action that may show nothing (returns None): the next one is
        first then."""
        if self._on_screen is None:
            return await action
        on_screen, self._on_screen = self._on_screen, None
        self._starting()
        result = await action
        if result is None:
            self._on_screen = on_screen
        else:
            await on_screen()
        return result

    async def download(self, attachment: Attachment, max_bytes: int) -> bytes:
        return await self._inner.download(attachment, max_bytes)


class Nowhere:
    """Never used to speak: the replier of an event closed without an answer."""

    max_message_length = 1
    edit_interval = 1.0
    stream_placeholder: str | None = None
    platform_help = PlatformHelp()

    async def post(
        self, text: str, *, private: bool = False, controls: AnswerControls | None = None
    ) -> str:
        raise RuntimeError("no route")

    async def edit(
        self, message_id: str, text: str, *, controls: AnswerControls | None = None
    ) -> None:
        raise RuntimeError("no route")

    async def upload(self, file: OutgoingFile, comment: str | None = None) -> None:
        raise RuntimeError("no route")

    async def download(self, attachment: Attachment, max_bytes: int) -> bytes:
        raise RuntimeError("no route")

"""Repliers the inbox hands out: one that marks its event as answering at its first message,
and one for events answered where nobody sees (closed without a reply)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bot.domain import Attachment, OutgoingFile, PlatformHelp, Replier


class Watched:
    """The replier of an event in line: its first message also marks it as answering (the
    row, at the same time, so no latency is added; after that a crash does not answer it
    again), and lets the next in line announce itself below it."""

    def __init__(self, inner: Replier, mark: Callable[[], Awaitable[None]]) -> None:
        self._inner = inner
        self._mark: Callable[[], Awaitable[None]] | None = mark
        self.max_message_length = inner.max_message_length
        self.edit_interval = inner.edit_interval
        self.stream_placeholder = inner.stream_placeholder

    def __getattr__(self, name: str) -> Any:  # ThreadReader and adapter extras
        return getattr(self._inner, name)

    async def _first(self, action: Awaitable[Any]) -> Any:
        if self._mark is None:
            return await action
        mark, self._mark = self._mark, None
        _, result = await asyncio.gather(mark(), action)
        return result

    async def post(self, text: str, *, private: bool = False) -> str:
        result: str = await self._first(self._inner.post(text, private=private))
        return result

    async def edit(self, message_id: str, text: str) -> None:
        await self._first(self._inner.edit(message_id, text))

    async def upload(self, file: OutgoingFile, comment: str | None = None) -> None:
        await self._first(self._inner.upload(file, comment))

    async def download(self, attachment: Attachment, max_bytes: int) -> bytes:
        return await self._inner.download(attachment, max_bytes)


class Nowhere:
    """Never used to speak: the replier of an event closed without an answer."""

    max_message_length = 1
    edit_interval = 1.0
    stream_placeholder: str | None = None
    platform_help = PlatformHelp()

    async def post(self, text: str, *, private: bool = False) -> str:
        raise RuntimeError("no route")

    async def edit(self, message_id: str, text: str) -> None:
        raise RuntimeError("no route")

    async def upload(self, file: OutgoingFile, comment: str | None = None) -> None:
        raise RuntimeError("no route")

    async def download(self, attachment: Attachment, max_bytes: int) -> bytes:
        raise RuntimeError("no route")

"""Per-conversation lines in one process: who runs next, and when a waiting event may say it
waits."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.domain import ConversationKey
from bot.store.inbox import VISIBLE

log = logging.getLogger(__name__)

#: Seconds between two looks at the database while another replica answers an earlier event.
POLL_SECONDS = 0.05
#: Longest wait for another replica's earlier event of the conversation (a lost row must not
#: hold a conversation up for good; a real queue of answers is far shorter).
STUCK_SECONDS = 900.0


@dataclass
class _Line:
    founder: int  # the entry whose joining made the line
    members: list[int] = field(default_factory=list)  # ordinals, sorted
    started: int = 0  # turns begun since the line was made
    running: int | None = None
    visible: set[int] = field(default_factory=set)  # members that showed something
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Lines:
    """Per-conversation lines in this process: an entry runs when it is the earliest in its
    line and nothing in the line runs. Entries join when accepted (in id order, whatever order
    their tasks start in)."""

    def __init__(self) -> None:
        self._lines: dict[ConversationKey, _Line] = {}

    def join(self, key: ConversationKey, ordinal: int) -> bool:
        """Take a place; True when the line was empty (this entry made it)."""
        line = self._lines.get(key)
        made = line is None
        if line is None:
            line = self._lines[key] = _Line(ordinal)
        bisect.insort(line.members, ordinal)
        return made

    def __contains__(self, key: ConversationKey) -> bool:
        return key in self._lines

    async def wait(
        self,
        key: ConversationKey,
        ordinal: int,
        blocked: Callable[[], Awaitable[str | None]],
        on_wait: Callable[[], Awaitable[None]] | None = None,
        ahead_shows: Callable[[], Awaitable[bool]] | None = None,
    ) -> bool:
        """Until it is this entry's turn and `blocked` (asked at that moment) names no earlier
        open row elsewhere (it returns that row's state). `on_wait` is awaited once, when the
        entry must wait and the one just ahead of it shows something (so what `on_wait` posts
        lands below it; `ahead_shows` confirms it when other processes may hold rows in
        between, and is asked again every POLL_SECONDS until it does). Returns whether this
        entry made its line and is the first of it to run (nothing of the conversation ran in
        this process since it joined)."""
        line = self._lines[key]
        since = time.monotonic()
        while True:
            while not (line.running is None and line.members[0] == ordinal):
                if on_wait is not None and self._ahead_visible(line, ordinal):
                    if ahead_shows is None or await ahead_shows():
                        told, on_wait = on_wait, None
                        await told()
                        continue  # the line may have moved meanwhile
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(line.changed.wait(), POLL_SECONDS)
                    continue
                await line.changed.wait()
            line.running = ordinal  # nobody else starts while the database is asked
            try:
                ahead = await blocked()
            except BaseException:
                self._release(line)
                raise
            if ahead is None:
                return self._begin(line, ordinal)
            if time.monotonic() - since > STUCK_SECONDS:
                # Better an answer out of order than a conversation stuck for good.
                log.warning("gave up waiting for an earlier event of the conversation (%s)", ahead)
                return self._begin(line, ordinal)
            self._release(line)
            if on_wait is not None and ahead in VISIBLE:
                told, on_wait = on_wait, None
                await told()
            await asyncio.sleep(POLL_SECONDS)

    @staticmethod
    def _begin(line: _Line, ordinal: int) -> bool:
        first = line.started == 0 and line.founder == ordinal
        line.started += 1
        return first

    def show(self, key: ConversationKey, ordinal: int) -> None:
        """The entry has something on screen (its answer, or its notice)."""
        line = self._lines.get(key)
        if line is not None and ordinal in line.members and ordinal not in line.visible:
            line.visible.add(ordinal)
            self._notify(line)

    def leave(self, key: ConversationKey, ordinal: int) -> None:
        line = self._lines.get(key)
        if line is None or ordinal not in line.members:
            return
        line.members.remove(ordinal)
        line.visible.discard(ordinal)
        if line.running == ordinal:
            line.running = None
        if not line.members:
            del self._lines[key]
        self._notify(line)

    @staticmethod
    def _ahead_visible(line: _Line, ordinal: int) -> bool:
        at = bisect.bisect_left(line.members, ordinal)
        return at > 0 and line.members[at - 1] in line.visible

    def _release(self, line: _Line) -> None:
        line.running = None
        self._notify(line)

    @staticmethod
    def _notify(line: _Line) -> None:
        line.changed.set()
        line.changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._lines)

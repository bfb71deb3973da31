"""Acknowledgements before answers: while a crowd of Events API requests is being acknowledged
(a burst of mentions), the answers already acknowledged wait to start, so the acks are not
queued in the one event loop behind the answers' work (Slack retries an event it has no ack
for within 3 s, and shows the person an error).

The crowd counts the requests in acknowledgement and the connections the kernel holds for us
not yet accepted (`waiting`): uvloop accepts a burst's connections a few at a time and each is
acknowledged within a millisecond or two, so few are ever in acknowledgement at once while
most of the burst still waits to be accepted (docs/perf/acks.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

#: Requests in acknowledgement from which answers wait: more than one mention's two events
#: (a lone mention's answer never waits for its companion `message` event's ack).
CROWD = 8
#: The longest an answer waits for the acks (under a steady stream of requests it never would
#: find a quiet moment).
PATIENCE = 1.0


class AckFirst:
    """Counts the requests being acknowledged (`acking`); `turn` is where an answer waits."""

    def __init__(
        self,
        crowd: int = CROWD,
        patience: float = PATIENCE,
        waiting: Callable[[], int] = lambda: 0,
    ) -> None:
        self._crowd = crowd
        self._patience = patience
        #: Connections not yet accepted (`adapters.web.WebServer.pending_connections`).
        self.waiting = waiting
        self._acking = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    @contextlib.contextmanager
    def acking(self) -> Iterator[None]:
        """Around one request's handling, up to its response."""
        self._acking += 1
        if self._quiet.is_set() and self._acking + self.waiting() >= self._crowd:
            self._quiet.clear()
        try:
            yield
        finally:
            self._acking -= 1
            if not self._quiet.is_set() and self._acking + self.waiting() < self._crowd:
                self._quiet.set()

    async def turn(self) -> None:
        """Return once few requests are being acknowledged (or after `patience` seconds)."""
        if not self._quiet.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), self._patience)

"""Acknowledgements before answers: while a crowd of Events API requests is being acknowledged
(a burst of mentions), the answers already acknowledged wait to start, so the acks are not
queued in the one event loop behind the answers' work (Slack retries an event it has no ack
for within 3 s, and shows the person an error).

When the crowd thins, the waiting answers start a few at a time, one group per turn of the
event loop, rather than all at once: in a burst the crowd thins for a moment whenever the loop
has finished the requests it has read and not yet read the next ones (a group commit answers
hundreds of INSERTs in one turn), and waking every answer then queued the rest of the burst's
acks behind hundreds of answers' start-up work (docs/perf/acks.md)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator

#: Requests in acknowledgement from which answers wait: more than one mention's two events
#: (a lone mention's answer never waits for its companion `message` event's ack).
CROWD = 8
#: The longest an answer waits for the acks (under a steady stream of requests it never would
#: find a quiet moment).
PATIENCE = 1.0
#: Waiting answers started per turn of the event loop once the crowd has thinned.
STARTS_PER_TURN = 16


class AckFirst:
    """Counts the requests being acknowledged (`acking`); `turn` is where an answer waits."""

    def __init__(
        self, crowd: int = CROWD, patience: float = PATIENCE, per_turn: int = STARTS_PER_TURN
    ) -> None:
        self._crowd = crowd
        self._patience = patience
        self._per_turn = per_turn
        self._acking = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._starting: asyncio.Handle | None = None  # the next group's start, scheduled

    @contextlib.contextmanager
    def acking(self) -> Iterator[None]:
        """Around one request's handling, up to its response."""
        self._acking += 1
        try:
            yield
        finally:
            self._acking -= 1
            self._start_soon()

    async def turn(self) -> None:
        """Return once few requests are being acknowledged and the answers that waited before
        this one have started (or after `patience` seconds)."""
        while self._waiting and self._waiting[0].done():
            self._waiting.popleft()  # (they ran out of patience)
        if self._acking < self._crowd and not self._waiting:
            return
        started = asyncio.get_running_loop().create_future()
        self._waiting.append(started)
        self._start_soon()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(started, self._patience)

    def _start_soon(self) -> None:
        if self._waiting and self._starting is None and self._acking < self._crowd:
            self._starting = asyncio.get_running_loop().call_soon(self._start_some)

    def _start_some(self) -> None:
        """Start the next few waiting answers, in their order, while the crowd stays thin;
        the group after them in the event loop's next turn (new requests read meanwhile
        come first)."""
        self._starting = None
        if self._acking >= self._crowd:
            return  # a crowd again: the last of its requests to go calls _start_soon
        for _ in range(self._per_turn):
            if not self._waiting:
                break
            waiter = self._waiting.popleft()
            if not waiter.done():  # (done: it ran out of patience)
                waiter.set_result(None)
        self._start_soon()

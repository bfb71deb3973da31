"""The core's backpressure: fair slots for answers in flight, a byte budget for downloads."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairSlots:
    """At most `size` holders at once; the rest wait in arrival order (first come, first
    served, whatever the event loop's wake-up order)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def busy(self) -> bool:
        """Whether any slot is held (the background embedder waits for none to be)."""
        return self._free < self._size or bool(self._waiters)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def join(self) -> asyncio.Future[None] | None:
        """Take a slot now (None), or a place in line: await it with `wait`."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def wait(self, waiter: asyncio.Future[None]) -> None:
        try:
            await waiter  # `release` hands its slot straight to the first waiter
        except BaseException:
            self.leave(waiter)
            raise

    def leave(self, waiter: asyncio.Future[None]) -> None:
        """Give up a place in line (cancelled): a slot already handed over is passed on."""
        if waiter.done() and not waiter.cancelled():
            self.release()
        else:
            waiter.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class ByteBudget:
    """Bytes that may be held at once (downloads in memory); a request larger than the whole
    budget waits for all of it, so one large file still gets through alone."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._used = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, amount: int) -> AsyncIterator[None]:
        amount = min(amount, self._size)
        async with self._changed:
            await self._changed.wait_for(lambda: self._used + amount <= self._size)
            self._used += amount
        try:
            yield
        finally:
            async with self._changed:
                self._used -= amount
                self._changed.notify_all()

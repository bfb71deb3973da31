"""Per-user request limit: a sliding one-minute window kept in memory."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """At most `per_minute` requests per key in any 60 seconds; 0 disables the limit."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def acquire(self, key: str) -> float | None:
        """Count one request for `key`; return None if allowed, else seconds until one is."""
        if self._per_minute <= 0:
            return None
        now = self._clock()
        hits = self._hits.setdefault(key, deque())
        while hits and now - hits[0] >= self.WINDOW:
            hits.popleft()
        if len(hits) >= self._per_minute:
            return self.WINDOW - (now - hits[0])
        hits.append(now)
        if len(self._hits) > 10_000:
            self._prune(now)
        return None

    def _prune(self, now: float) -> None:
        # Keeps memory bounded by active users, not by every user ever seen.
        stale = [k for k, h in self._hits.items() if not h or now - h[-1] >= self.WINDOW]
        for key in stale:
            del self._hits[key]

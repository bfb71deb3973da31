"""One chat.update budget per workspace, shared by every answer streaming there.

Slack rates chat.update at Tier 3, "50+ per minute", counted per method and workspace
(docs.slack.dev/reference/methods/chat.update; docs.slack.dev/apis/web-api/rate-limits). Past it,
Slack answers 429 with Retry-After. A token bucket keeps a workspace's edits under the limit: each
edit waits for a token, in arrival order, so when many answers stream at once each one edits less
often, and a final edit waits its turn instead of failing.
"""

from __future__ import annotations

import asyncio
import time

#: Slack's documented chat.update rate (Tier 3), per workspace.
SLACK_UPDATES_PER_MINUTE = 50
#: chat.appendStream's rate (Tier 4, "100+ per minute"), per workspace: natively streamed
#: answers share it as others share chat.update's.
SLACK_APPENDS_PER_MINUTE = 100


class EditBudget:
    """A token bucket: `burst` edits at once, refilled so that no `window` (a minute; tests
    shrink it) holds more than `per_minute` edits (burst + a window of refill = per_minute)."""

    def __init__(self, per_minute: int = SLACK_UPDATES_PER_MINUTE, window: float = 60.0) -> None:
        if per_minute <= 0 or window <= 0:
            raise ValueError("per_minute and window must be positive")
        self.burst = max(1, per_minute // 5)
        # Tokens a second, refilled over 61/60 of the window: a margin for the two clocks.
        self._rate = max(per_minute - self.burst, 1) / (window * 61 / 60)
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()  # waiters are served first come, first served

    async def take(self) -> None:
        """Wait for a token, then spend it."""
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self._rate)
                self._refill()
            self._tokens -= 1

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now


class WorkspaceBudgets:
    """An `EditBudget` per workspace (team id), made on first use; None when unlimited."""

    def __init__(self, per_minute: int, window: float = 60.0) -> None:
        self._per_minute = per_minute
        self._window = window
        self._budgets: dict[str, EditBudget] = {}

    def get(self, workspace: str) -> EditBudget | None:
        if self._per_minute <= 0:
            return None
        budget = self._budgets.get(workspace)
        if budget is None:
            budget = self._budgets[workspace] = EditBudget(self._per_minute, self._window)
        return budget

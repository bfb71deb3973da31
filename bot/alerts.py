"""Telling admins about trouble before users do: TokModel rejecting the key (401), the account
out of credits (403), a budget passing 80 %.

The core decides what to say and when; adapters deliver. Each adapter that can reach admins
(Slack and Discord DMs, or an alert channel) registers an `AlertSink`. An alert of one kind goes
out once per hour at most across every replica: the last time is claimed in the database
(`alerts_sent`) before anything is sent. Sending runs in a task of its own, so the request that
ran into the trouble is answered without waiting for it.

`Alerts.problem` also says, for `/healthz`, whether TokModel is currently refusing us (the
key is rejected, or credits are out) until a TokModel request succeeds again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bot.tokmodel.errors import InsufficientCredits, TokModelError, Unauthorized

if TYPE_CHECKING:
    from bot.store import Store

log = logging.getLogger(__name__)

#: An alert of one kind is sent at most once in this many seconds (across replicas).
QUIET_SECONDS = 3600.0

KEY_REJECTED = "tokmodel-401"
OUT_OF_CREDITS = "tokmodel-403"

_KEY_REJECTED_TEXT = (
    "🚨 tokbot: TokModel rejected the API key (401). Every request fails until an admin sets "
    "a valid `TOKMODEL_API_KEY` (TokModel console → API Keys) and restarts tokbot."
)
_OUT_OF_CREDITS_TEXT = (
    "🚨 tokbot: the TokModel account is out of credits (403). Every request fails until an "
    "admin tops it up (TokModel console → Billing → Top up; no restart needed)."
)


@dataclass(frozen=True)
class Alert:
    """Something admins should hear about. `platform` / `workspace` narrow who is told (None:
    every platform / workspace tokbot serves)."""

    kind: str
    text: str
    platform: str | None = None
    workspace: str | None = None


class AlertSink(Protocol):
    """An adapter's way to reach admins (DMs, or the channel `TOKBOT_ALERT_CHANNEL` names)."""

    #: The platform it delivers on ("slack", "discord"), matched against `Alert.platform`.
    platform: str

    async def send_alert(self, alert: Alert) -> int:
        """Deliver `alert` to the admins of `alert.workspace` (every workspace when None);
        return how many people or channels it reached. Failures are the sink's to log."""
        ...


class Alerts:
    """Registered sinks, the once-per-hour rule, and TokModel's health as last seen."""

    def __init__(self, store: Store, *, quiet_seconds: float = QUIET_SECONDS) -> None:
        self._store = store
        self._quiet = quiet_seconds
        self._sinks: list[AlertSink] = []
        self._tasks: set[asyncio.Task[None]] = set()
        #: Why TokModel refuses us right now (for /healthz), or None.
        self.problem: str | None = None
        self._admins: dict[tuple[str, str], set[str]] = {}

    def register(self, sink: AlertSink) -> None:
        self._sinks.append(sink)

    def unregister(self, sink: AlertSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def saw_admin(self, platform: str, workspace: str, user_id: str) -> None:
        """A platform admin used the bot: alerts for this workspace may DM them too. Stored
        once per process (in the background), so every replica and a restart know them."""
        known = self._admins.setdefault((platform, workspace), set())
        if user_id not in known:
            known.add(user_id)
            self._spawn(self._store.budgets.saw_admin(platform, workspace, user_id))

    async def admins_seen(self, platform: str, workspace: str) -> frozenset[str]:
        """Admins of the workspace who used the bot (seen by any replica)."""
        seen = set(self._admins.get((platform, workspace), ()))
        try:
            seen.update(await self._store.budgets.admins_seen(platform, workspace))
        except Exception:  # the ones this process saw still hear about it
            log.warning("could not read the admins seen", exc_info=True)
        return frozenset(seen)

    # -- TokModel's health ----------------------------------------------------------------

    def tokmodel_failed(self, exc: TokModelError) -> None:
        """A TokModel request failed: a rejected key or missing credits degrade health and
        alert the admins (other failures pass)."""
        if isinstance(exc, Unauthorized):
            self.problem = "TokModel rejected the API key (401)"
            self.notify(Alert(KEY_REJECTED, _KEY_REJECTED_TEXT))
        elif isinstance(exc, InsufficientCredits):
            self.problem = "the TokModel account is out of credits (403)"
            self.notify(Alert(OUT_OF_CREDITS, _OUT_OF_CREDITS_TEXT))

    def tokmodel_ok(self) -> None:
        """A TokModel request succeeded: whatever refused us before is over."""
        if self.problem is not None:
            log.info("TokModel answers again (was: %s)", self.problem)
            self.problem = None

    # -- sending --------------------------------------------------------------------------

    def notify(self, alert: Alert, *, quiet_seconds: float | None = None) -> None:
        """Send `alert` in the background, unless one of its kind went out recently."""
        self._spawn(self.send(alert, quiet_seconds))

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(self._logged(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _logged(work: Coroutine[Any, Any, object]) -> None:
        try:
            await work
        except Exception:
            log.warning("an alert task failed", exc_info=True)

    async def send(self, alert: Alert, quiet_seconds: float | None = None) -> int:
        """Claim `alert.kind` (across replicas) and deliver it; return how many it reached (0
        when it was sent recently, or no sink can reach anyone)."""
        sinks = [s for s in self._sinks if alert.platform in (None, s.platform)]
        if not sinks:
            return 0  # not claimed: a replica that can reach admins may still send it
        quiet = self._quiet if quiet_seconds is None else quiet_seconds
        try:
            if not await self._store.budgets.claim_alert(alert.kind, quiet_seconds=quiet):
                return 0
            reached = 0
            for sink in sinks:
                try:
                    reached += await sink.send_alert(alert)
                except Exception:
                    log.warning("could not send the %s alert", alert.kind, exc_info=True)
            if reached == 0:  # nobody heard it: let the next occurrence try again
                await self._store.budgets.forget_alert(alert.kind)
            else:
                log.info("alert %s sent to %d admin(s) or channel(s)", alert.kind, reached)
            return reached
        except Exception:
            log.warning("could not send the %s alert", alert.kind, exc_info=True)
            return 0

    async def close(self) -> None:
        """Let alerts being sent finish (briefly), then stop."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()

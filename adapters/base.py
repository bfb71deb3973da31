"""What the composition root needs of a platform adapter: a lifecycle and a health check."""

from __future__ import annotations

from typing import Protocol


class Adapter(Protocol):
    #: Short platform name, used in logs and /healthz ("slack", "discord").
    name: str

    async def start(self) -> None:
        """Connect (or start serving); return once the adapter is ready, raise if it can't be."""
        ...

    async def drain(self, timeout: float) -> None:
        """Shutting down: let the answers in flight finish for up to `timeout` seconds, then
        cancel the rest (the core shows them as cut off). Cancelled itself (a second Ctrl-C),
        it cancels them at once."""
        ...

    async def stop(self) -> None:
        """Cancel what is still running, disconnect and release everything; safe to call
        after a failed start."""
        ...

    async def healthy(self) -> bool:
        """True while connected to the platform and able to answer."""
        ...

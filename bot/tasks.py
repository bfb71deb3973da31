"""Shutting down with work in flight (answers on every platform, background folds): one way."""

from __future__ import annotations

import asyncio
from collections.abc import Collection


async def drain_tasks(tasks: Collection[asyncio.Task[None]], timeout: float) -> None:
    """Wait up to `timeout` seconds for `tasks` (a live collection, e.g. a set or a dict's
    values: work started meanwhile is waited for too), then cancel those left and wait for them
    to end: the core marks a cancelled answer cut off, within a bound of its own. Cancelled
    while waiting (a second Ctrl-C), it cancels them at once the same way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(tasks), timeout=left)
    finally:
        left_over = list(tasks)
        for task in left_over:
            task.cancel()
        if left_over:
            await asyncio.gather(*left_over, return_exceptions=True)

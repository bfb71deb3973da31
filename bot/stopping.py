"""Answers streaming in this process, by their stored turn id, so their asker can stop one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class RunningAnswer:
    #: Who asked: the only person who may stop it.
    asker_id: str
    #: Reads TokModel's stream into the messages; cancelled to stop.
    reading: asyncio.Future[Any]
    stop_requested: bool = False


class RunningAnswers:
    def __init__(self) -> None:
        self._running: dict[int, RunningAnswer] = {}

    @contextlib.contextmanager
    def running(
        self, turn_id: int, asker_id: str, reading: asyncio.Future[Any]
    ) -> Iterator[RunningAnswer]:
        """While the block runs, `stop(turn_id)` cancels `reading`."""
        entry = RunningAnswer(asker_id, reading)
        self._running[turn_id] = entry
        try:
            yield entry
        finally:
            if self._running.get(turn_id) is entry:
                del self._running[turn_id]

    def get(self, turn_id: int) -> RunningAnswer | None:
        return self._running.get(turn_id)

    def stop(self, turn_id: int) -> bool:
        """Stop the answer streaming as `turn_id`; False when none is (here)."""
        entry = self._running.get(turn_id)
        if entry is None:
            return False
        entry.stop_requested = True
        entry.reading.cancel()
        return True

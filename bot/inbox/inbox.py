"""The inbox: every platform event is stored before it is acknowledged, with what answering it
needs, and answered in its conversation's order by whichever process is alive.

- `accept` claims the event (de-duplication) and stores it in one INSERT; the row's id is the
  event's place in its conversation's line, taken before any network call.
- `turn` waits for that place: first behind this process's earlier events of the conversation,
  then, unless this process is the only one, behind other replicas' (the database says whether
  an earlier row is still open).
- Processes say they are alive every fifth of the lease; the rows of one silent for longer are
  taken over (a conditional UPDATE: exactly one taker) and answered, through a replier the
  adapter builds from the stored route. A row whose answer had started showing is not answered
  again (that would say it twice): it is closed, and its answer was marked interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from bot.domain import (
    ConversationKey,
    Incoming,
    Replier,
)
from bot.inbox.codec import Route, decode, encode, line_number
from bot.inbox.lines import Lines
from bot.inbox.repliers import Nowhere, Watched
from bot.store import Store
from bot.store.inbox import ANNOUNCED, ANSWERING, DONE, VISIBLE

log = logging.getLogger(__name__)

#: Platforms redeliver events for minutes; a week of ids is ample and keeps the table small.
EVENT_MEMORY_SECONDS = 7 * 24 * 3600
#: Events of as many conversations being stored at once from which no read ahead begins.
READ_AHEAD_CROWD = 4
#: A process alone marks the rows finished within this many seconds done in one statement.
DONE_FLUSH_SECONDS = 0.05

#: Rebuilds a stored event and a replier for it from its route (None: it cannot be answered).
Recoverer = Callable[[Incoming, Route], Awaitable[tuple[Incoming, Replier] | None]]
Handler = Callable[[Incoming, Replier, "Ticket"], Awaitable[None]]


class ReadAhead:
    """A read the event's handler starts with, begun beside the event's INSERT (`Inbox.accept`)
    instead of after it: one trip to the database less before TokModel is asked. Made only when
    no other process runs and nothing of the conversation is in line or being accepted here;
    dropped when anything else of the conversation runs first after all (its answer would be
    missing from what was read). The handler takes it, or reads afresh."""

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self._future: asyncio.Future[Any] | None = future
        future.add_done_callback(_retrieved)

    def take(self) -> asyncio.Future[Any] | None:
        future, self._future = self._future, None
        return future

    def drop(self) -> None:
        future = self.take()
        if future is not None:
            future.cancel()


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A read ahead nobody used may have failed: its handler read afresh (or never began)."""
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True)
class Ticket:
    """An accepted event's place in its conversation's line. `inbox_id` is None for events
    kept only in memory (no platform event id, e.g. the console)."""

    key: ConversationKey
    ordinal: int
    inbox_id: int | None = None
    #: Waits for the conversation's earlier events (False: a command that never waits).
    ordered: bool = True
    read_ahead: ReadAhead | None = field(default=None, compare=False)


class Inbox:
    """The core's inbox service (see the module's docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        lease_seconds: float = 15.0,
        prune_every: float = 600.0,
        memory_seconds: float = EVENT_MEMORY_SECONDS,
    ) -> None:
        self._store = store
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._lease = lease_seconds
        self._beat = lease_seconds / 5
        self._prune_every = prune_every
        self._memory = memory_seconds
        self._lines = Lines()
        self._accepting: dict[ConversationKey, int] = {}  # ordered events being stored
        # Reads ahead only where reading takes no connection from writing (SQLite: one reader
        # and one writer connection of the store's own). On PostgreSQL a read ahead holds a
        # second pooled connection beside the INSERT, and in a burst the acknowledgements'
        # INSERTs waited for the pool until they timed out (tests/reliability/test_load.py).
        self._reads_ahead = store.engine.dialect.name == "sqlite"
        self._local = 1 << 62  # ordinals of events kept only in memory, after any row id
        #: No other process is known: this one's lines are the whole order (no database look).
        self.alone = False
        self._recoverers: dict[str, Recoverer] = {}
        self._handle: Handler | None = None
        self._loop: asyncio.Task[None] | None = None
        self._done: list[int] = []  # rows finished, not yet marked done (alone: batched)
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Answering marks under way, per row: the row's end waits for its mark.
        self._answering: dict[int, asyncio.Task[None]] = {}

    # -- accepting and ordering -----------------------------------------------------------

    async def accept(
        self,
        incoming: Incoming,
        route: Route,
        *,
        ordered: bool = True,
        read_ahead: Callable[[], Awaitable[Any]] | None = None,
    ) -> Ticket | None:
        """Claim and store the event, and take its place in line (when `ordered`); None when
        it was claimed before. Without an event id, the place is taken in memory only.
        `read_ahead`: the handler's first read, started beside the INSERT when nothing can
        change what it reads before the handler runs (`ReadAhead`)."""
        key = incoming.key
        early = None  # (only beside an INSERT: without an event id there is none to wait on)
        if read_ahead and ordered and incoming.event_id is not None and self._quiet(key):
            early = ReadAhead(asyncio.ensure_future(read_ahead()))
        if ordered:
            self._accepting[key] = self._accepting.get(key, 0) + 1
        try:
            ordinal, inbox_id = await self._claim(incoming, route, ordered)
        except BaseException:
            if early is not None:
                early.drop()
            raise
        finally:
            if ordered:
                self._accepting[key] -= 1
                if not self._accepting[key]:
                    del self._accepting[key]
        if ordinal is None:
            if early is not None:
                early.drop()
            return None
        if ordered and not self._lines.join(key, ordinal) and early is not None:
            early.drop()  # something of the conversation is in line after all
        return Ticket(key, ordinal, inbox_id, ordered, early)

    def _quiet(self, key: ConversationKey) -> bool:
        """A read ahead may begin: no other process, nothing of the conversation in line or
        being accepted here, few events being accepted at all (in a burst, the platform's
        acknowledgements wait on those INSERTs: answer work started beside them only delays
        the acks, and the answer would wait for them anyway), and a database where it takes no
        connection from the INSERT."""
        return (
            self._reads_ahead
            and self.alone
            and len(self._accepting) < READ_AHEAD_CROWD
            and key not in self._lines
            and key not in self._accepting
        )

    async def _claim(
        self, incoming: Incoming, route: Route, ordered: bool
    ) -> tuple[int | None, int | None]:
        """The event's ordinal and inbox row id (None, None: claimed before)."""
        if incoming.event_id is None:
            self._local += 1
            return self._local, None
        inbox_id = await self._store.enqueue(
            incoming.key,
            incoming.event_id,
            owner=self.owner,
            payload=encode(incoming, route),
            line=line_number(incoming.key),
            ordered=ordered,
        )
        if inbox_id is None:
            log.debug("event %s already handled; ignoring the redelivery", incoming.event_id)
        return inbox_id, inbox_id

    def release(self, ticket: Ticket, *, close: bool = False) -> None:
        """Give up a place that will not be used: the row stays for a later taker, or with
        `close`, is done (nothing will answer it; later rows must not wait for it)."""
        if ticket.read_ahead is not None:
            ticket.read_ahead.drop()
        self._lines.leave(ticket.key, ticket.ordinal)
        if close and ticket.inbox_id is not None:
            task = asyncio.create_task(self._mark(ticket, DONE))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @asynccontextmanager
    async def turn(
        self,
        ticket: Ticket,
        replier: Replier,
        on_wait: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[Replier]:
        """Wait for the ticket's turn, then hold it; the row is done when the block ends (a
        cancellation while waiting leaves it for another process, or the next start).
        `on_wait` is called once if it must wait, as soon as what it waits for shows, and says
        whether it posted a notice."""

        async def announce() -> None:
            if on_wait is not None and await on_wait():
                self._lines.show(ticket.key, ticket.ordinal)
                if ticket.inbox_id is not None and not self.alone:  # (only replicas read it)
                    await self._mark(ticket, ANNOUNCED)

        if ticket.ordered:
            try:
                first = await self._lines.wait(
                    ticket.key,
                    ticket.ordinal,
                    lambda: self._blocked(ticket),
                    announce,
                    lambda: self._ahead_shows(ticket),
                )
            except BaseException:
                self.release(ticket)
                raise
            if ticket.read_ahead is not None and not (first and self.alone):
                ticket.read_ahead.drop()  # read before an earlier event's answer was stored
        shown: list[bool] = []
        try:
            yield Watched(replier, lambda: shown.append(True), lambda: self._started(ticket))
        except asyncio.CancelledError:
            if not shown:  # stopping before anything showed: kept for the restart or a replica
                self.release(ticket)
                raise
            await self._close(ticket)
            raise
        except BaseException:
            await self._close(ticket)
            raise
        await self._close(ticket)

    async def _close(self, ticket: Ticket) -> None:
        try:
            if ticket.inbox_id is not None:  # done before the next in line looks
                await asyncio.shield(self._finish(ticket))
        finally:
            self.release(ticket)

    async def _blocked(self, ticket: Ticket) -> str | None:
        if self.alone or ticket.inbox_id is None:
            return None
        return await self._store.open_before(ticket.key, ticket.inbox_id)

    async def _ahead_shows(self, ticket: Ticket) -> bool:
        """With other replicas, the row just ahead may be theirs: it must show something."""
        if self.alone or ticket.inbox_id is None:
            return True
        ahead = await self._store.open_before(ticket.key, ticket.inbox_id)
        return ahead is None or ahead in VISIBLE

    async def _started(self, ticket: Ticket) -> None:
        self._lines.show(ticket.key, ticket.ordinal)
        if ticket.inbox_id is not None:
            # Marked beside the answer rather than before its next call to the platform (issue
            # 16: a database write between a stream's first and last call); the row's end
            # waits for it, so `done` is never overtaken by `answering`.
            self._answering[ticket.inbox_id] = asyncio.create_task(self._mark(ticket, ANSWERING))

    async def _finish(self, ticket: Ticket) -> None:
        """The row is done: at once when other replicas may wait for it; alone, with the
        rows that finish within DONE_FLUSH_SECONDS in one statement (a crash meanwhile leaves
        them answering or waiting, and the restart closes or answers them)."""
        assert ticket.inbox_id is not None
        marking = self._answering.pop(ticket.inbox_id, None)
        if marking is not None:
            await marking
        if not self.alone:
            await self._mark(ticket, DONE)
            return
        self._done.append(ticket.inbox_id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_done(DONE_FLUSH_SECONDS))

    async def _flush_done(self, delay: float) -> None:
        await asyncio.sleep(delay)
        ids, self._done = self._done, []
        if ids:
            try:
                await self._store.finish_inbox(ids, owner=self.owner)
            except Exception:
                log.warning("could not mark %d event(s) done", len(ids), exc_info=True)

    async def _mark(self, ticket: Ticket, state: str) -> None:
        assert ticket.inbox_id is not None
        try:
            if not await self._store.set_inbox_state(ticket.inbox_id, state, owner=self.owner):
                log.warning("event %s was taken over by another process", ticket.inbox_id)
        except Exception:
            log.warning("could not mark event %s %s", ticket.inbox_id, state, exc_info=True)

    # -- recovery ---------------------------------------------------------------------------

    def can_answer(self, platform: str, recoverer: Recoverer) -> None:
        """An adapter offers to answer its platform's events left by dead processes."""
        self._recoverers[platform] = recoverer

    def cannot_answer(self, platform: str) -> None:
        """The adapter is stopping: leave its platform's events for another process."""
        self._recoverers.pop(platform, None)

    async def start(self, handle: Handler) -> None:
        """Say this process is alive (waiting a beat when others are, so they stop skipping
        the database's order), answer what dead processes left, then keep it up."""
        self._handle = handle
        await self._forget_dead_neighbours()
        known, alive = await self._store.heartbeat(self.owner, alive_after=self._alive_after())
        self.alone = known == 0
        if alive:
            await asyncio.sleep(self._beat * 1.5)
        await self._sweep()
        self._loop = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        # Answering marks still being written finish (a write each) before the store closes.
        await asyncio.gather(*self._answering.values(), return_exceptions=True)
        self._answering.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self._flush_done(0)
        try:
            await self._store.leave(self.owner)
        except Exception:
            log.warning("could not record this process's stop", exc_info=True)

    async def _forget_dead_neighbours(self) -> None:
        """Processes of this host whose pid is gone (killed, crashed) are dead now, not when
        their lease runs out: a restart neither waits for them nor leaves their events waiting
        a lease."""
        everyone = await self._store.dead_processes(self.owner, alive_after=time.time() + 1)
        for other in everyone:
            if _died_on_this_host(other):
                await self._store.leave(other)

    def _alive_after(self) -> float:
        return time.time() - self._lease

    async def _run(self) -> None:
        pruned = time.monotonic()
        while True:
            await asyncio.sleep(self._beat)
            try:
                known, _ = await self._store.heartbeat(self.owner, alive_after=self._alive_after())
                self.alone = known == 0
                await self._sweep()
                if time.monotonic() - pruned >= self._prune_every:
                    pruned = time.monotonic()
                    removed = await self._store.prune_inbox(self._memory)
                    if removed:
                        log.info("forgot %d answered event id(s) older than a week", removed)
            except Exception:  # the database may be briefly away; the next beat retries
                log.warning("inbox upkeep failed", exc_info=True)

    async def _sweep(self) -> None:
        for dead in await self._store.dead_processes(self.owner, alive_after=self._alive_after()):
            rows = await self._store.take_over(
                dead, owner=self.owner, platforms=sorted(self._recoverers)
            )
            if rows:
                log.warning("answering %d event(s) a stopped process left", len(rows))
            tickets = []
            for inbox_id, payload, ordered in rows:  # all in line before any is answered
                incoming, route = decode(payload)
                tickets.append((Ticket(incoming.key, inbox_id, inbox_id, ordered), incoming, route))
                if ordered:
                    self._lines.join(incoming.key, inbox_id)
            for ticket, incoming, route in tickets:
                task = asyncio.create_task(self._answer(ticket, incoming, route))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer(self, ticket: Ticket, incoming: Incoming, route: dict[str, str]) -> None:
        assert self._handle is not None
        recoverer = self._recoverers[incoming.key.platform]
        try:
            rebuilt = await recoverer(incoming, route)
        except Exception:
            log.exception("could not rebuild stored event %s", ticket.inbox_id)
            rebuilt = None
        if rebuilt is None:
            async with self.turn(ticket, Nowhere()):
                return  # nothing to answer through: closed
        await self._handle(*rebuilt, ticket)


def _died_on_this_host(owner: str) -> bool:
    """Whether `owner` (host-pid-token, as `Inbox.owner` names processes) ran on this host and
    its process is gone. A pid equal to ours is a previous life (a container restarted)."""
    host, _, rest = owner.rpartition("-")[0].rpartition("-")
    if host != socket.gethostname() or not rest.isdigit():
        return False
    pid = int(rest)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False

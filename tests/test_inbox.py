"""The inbox on real databases: one claim per event, one taker per dead process's event, and
answered events forgotten while the process runs (not only at start-up)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import func, select, update

from bot.core import Core
from bot.domain import Author, ConversationKey, Incoming
from bot.inbox import Inbox, Lines, decode, encode
from bot.inbox.inbox import _died_on_this_host
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.store import Store
from bot.store.database import WriterLock
from bot.store.models import InboxRow, ProcessedEventRow
from bot.tokmodel.fake import FakeTokModel
from tests.conftest import API_KEY
from tests.platform import RecordingReplier

KEY = ConversationKey("slack", "T1", "C1", "1.0")
WEEK_AND_A_DAY = 8 * 24 * 3600


def incoming(n: int) -> Incoming:
    return Incoming(KEY, Author("U1", "alice"), "ask", f"q{n}", event_id=f"E{n}")


async def test_an_event_is_claimed_once_and_its_payload_round_trips(store: Store) -> None:
    payload = encode(incoming(1), {"channel": "C1", "thread_ts": "1.0"})
    first = await store.enqueue(KEY, "E1", owner="a", payload=payload, line=7)
    again = await store.enqueue(KEY, "E1", owner="b", payload=payload, line=7)
    assert first is not None and again is None
    assert decode(payload) == (incoming(1), {"channel": "C1", "thread_ts": "1.0"})
    assert await store.open_before(KEY, first + 1) == "waiting"
    assert await store.set_inbox_state(first, "answering", owner="a")
    assert await store.open_before(KEY, first + 1) == "answering"
    assert await store.set_inbox_state(first, "done", owner="a")
    assert await store.open_before(KEY, first + 1) is None


async def test_a_dead_process_s_events_go_to_exactly_one_taker(
    store: Store, database_url: str
) -> None:
    ids = [
        await store.enqueue(KEY, f"E{n}", owner="dead", payload=encode(incoming(n), {}), line=7)
        for n in range(6)
    ]
    started = ids[0]
    assert started is not None and await store.set_inbox_state(started, "answering", owner="dead")
    replica = await Store.open(database_url)
    try:
        taken = await asyncio.gather(
            *(
                (store, replica)[n % 2].take_over("dead", owner=f"p{n}", platforms=["slack"])
                for n in range(6)
            )
        )
    finally:
        await replica.close()
    got = sorted(inbox_id for rows in taken for inbox_id, _, _ in rows)
    assert got == ids[1:]  # each waiting row once; the one that had started is not answered twice
    assert await store.open_before(KEY, started + 1) is None  # closed


async def test_answered_events_are_forgotten_while_running(
    make_settings: Callable[..., Settings], fake: FakeTokModel
) -> None:
    settings = make_settings(
        TOKBOT_PROCESS_LEASE_SECONDS="0.5", TOKBOT_PRUNE_INTERVAL_SECONDS="0.2"
    )
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        replier = RecordingReplier()
        await core.handle(incoming(1), replier)
        await core.store.claim_event("slack", "claimed-by-an-older-version")
        old = time.time() - WEEK_AND_A_DAY
        async with core.store.engine.begin() as conn:  # a week and a day pass
            await conn.execute(update(InboxRow).values(created_at=old))
            await conn.execute(update(ProcessedEventRow).values(created_at=old))

        async def remaining() -> int:
            async with core.store.engine.connect() as conn:
                inbox = (await conn.execute(select(func.count()).select_from(InboxRow))).scalar()
                claims = await conn.execute(select(func.count()).select_from(ProcessedEventRow))
                return int(inbox or 0) + int(claims.scalar() or 0)

        assert await remaining() == 2
        async with asyncio.timeout(10):
            while await remaining():
                await asyncio.sleep(0.05)


async def test_sqlite_s_writer_takes_an_urgent_write_before_those_queued() -> None:
    lock = WriterLock()
    order: list[str] = []

    async def write(name: str, urgent: bool = False) -> None:
        async with lock.hold(urgent=urgent):
            order.append(name)
            await asyncio.sleep(0)

    async with lock.hold():  # one statement running; three writers come meanwhile
        tasks = [asyncio.create_task(write("a")), asyncio.create_task(write("b"))]
        tasks.append(asyncio.create_task(write("ack", urgent=True)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == ["ack", "a", "b"]


async def test_an_event_cancelled_before_anything_showed_is_kept_for_the_restart(
    core: Core, fake: FakeTokModel
) -> None:
    fake.latency = 30  # TokModel is slow: nothing shows before the process stops
    replier = RecordingReplier()
    replier.stream_placeholder = None
    ticket = await core.accept(incoming(1), {"channel": "C1"})
    assert ticket is not None and ticket.inbox_id is not None
    answering = asyncio.create_task(core.handle(incoming(1), replier, ticket))
    async with asyncio.timeout(5):
        while not [r for r in fake.requests if r.path.endswith("/chat/completions")]:
            await asyncio.sleep(0.01)
    answering.cancel()  # a shutdown's cut-off
    with contextlib.suppress(asyncio.CancelledError):
        await answering
    await core.inbox.stop()  # (writes what it had batched)
    assert replier.order == []
    assert await core.store.open_before(KEY, ticket.inbox_id + 1) == "waiting"


async def test_a_process_of_this_host_whose_pid_is_gone_is_dead_at_once(store: Store) -> None:
    exited = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await exited.wait()
    killed = f"{socket.gethostname()}-{exited.pid}-abc123"  # e.g. SIGKILLed a moment ago
    living = f"{socket.gethostname()}-{os.getppid()}-abc123"
    await store.heartbeat(killed, alive_after=0)
    inbox = Inbox(store)  # a 15 s lease: the killed one would count as alive for 15 s

    async def handle(*_: object) -> None:
        raise AssertionError("nothing to answer")

    async with asyncio.timeout(2):  # no beat and a half's wait for a process that is gone
        await inbox.start(handle)
    try:
        _, alive = await store.heartbeat(inbox.owner, alive_after=time.time() - 15)
        assert alive == 0  # (and, having left nothing open, it is forgotten)
        assert not _died_on_this_host(living) and not _died_on_this_host("other-host-1-abc123")
    finally:
        await inbox.stop()


async def test_a_read_ahead_begins_only_in_a_quiet_conversation_and_is_dropped_by_a_duplicate(
    store: Store,
) -> None:
    inbox = Inbox(store)
    inbox.alone = True  # (as `start` finds it with no other process)
    started: list[int] = []

    def reader(n: int) -> Callable[[], Awaitable[int]]:
        async def read() -> int:
            started.append(n)
            return n

        return read

    first = await inbox.accept(incoming(1), {}, read_ahead=reader(1))
    second = await inbox.accept(incoming(2), {}, read_ahead=reader(2))  # behind the first
    if store.engine.dialect.name != "sqlite":  # it would hold a second pooled connection
        assert first is not None and first.read_ahead is None and started == []
        return
    assert first is not None and first.read_ahead is not None
    assert second is not None and second.read_ahead is None
    early = first.read_ahead.take()
    assert early is not None and await early == 1 and started == [1]
    again = await inbox.accept(incoming(1), {}, read_ahead=reader(3))  # a redelivery
    assert again is None
    inbox.alone = False  # another process may hold an earlier event of any conversation
    other = ConversationKey("slack", "T1", "C2", "1.0")
    elsewhere = Incoming(other, Author("U1", "alice"), "ask", "q", event_id="E9")
    assert (await inbox.accept(elsewhere, {}, read_ahead=reader(4))) is not None
    assert 4 not in started


async def test_an_entry_is_first_only_in_a_line_it_made_and_nothing_ran_before_it() -> None:
    lines = Lines()

    async def turn(ordinal: int) -> bool:
        first = await lines.wait(KEY, ordinal, _nobody_elsewhere)
        lines.leave(KEY, ordinal)
        return first

    assert lines.join(KEY, 5)
    # An earlier event joins after it (PostgreSQL may give a later INSERT the smaller id).
    assert not lines.join(KEY, 3)
    assert not await turn(3)  # (it did not make the line)
    assert not await turn(5)  # something ran before it
    assert lines.join(KEY, 7) and await turn(7)


async def _nobody_elsewhere() -> str | None:
    return None


async def test_two_events_of_a_conversation_at_once_each_see_the_one_before(
    core: Core, fake: FakeTokModel
) -> None:
    # The first one's context is read beside its INSERT; the second's, after the first answer
    # (on PostgreSQL either may be stored first: whichever runs second sees the other).
    replier = RecordingReplier()
    await asyncio.gather(
        core.handle(Incoming(KEY, Author("U1", "alice"), "ask", "one", event_id="E1"), replier),
        core.handle(Incoming(KEY, Author("U1", "alice"), "ask", "two", event_id="E2"), replier),
    )
    asked = [
        [m["content"] for m in (r.json or {})["messages"] if m["role"] == "user"]
        for r in fake.requests
        if r.path.endswith("/chat/completions")
    ]
    assert len(asked) == 2 and len(asked[0]) == 1
    assert asked[1] == [asked[0][0], *({"alice: one", "alice: two"} - {asked[0][0]})], asked

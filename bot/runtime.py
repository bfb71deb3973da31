"""Opening and closing the core's resources in the right order (store, migrations, client)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.core import Core
from bot.inbox import EVENT_MEMORY_SECONDS
from bot.metrics import Metrics
from bot.settings import Settings, SettingsError
from bot.store import Store
from bot.store.connect import describe, wait_until_reachable
from bot.tokmodel.client import TokModelClient
from bot.tokmodel.fake import FakeTokModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokModelEndpoint:
    base_url: str
    api_key: str


#: Container objects allocated (net) between the garbage collector's young passes; Python's
#: default is 700. A burst of 1,000 mentions made ~300 young, ~30 middle and 2-3 full passes
#: before its last ack, which rescanned the burst's own live requests and tasks each time:
#: about a fifth of the acks' CPU (docs/perf/acks.md). Garbage without cycles is freed at once
#: whatever this is; only cycles wait longer, a few MB at most.
GC_YOUNG_THRESHOLD = 50_000


def settle_gc() -> None:
    """Once a process has started: what is loaded lives as long as the process, so keep it out
    of the collector's passes (gc.freeze), and collect young objects less often."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, max(middle, 20), old)


@asynccontextmanager
async def open_store(settings: Settings, *, first: bool = True) -> AsyncIterator[Store]:
    """The store, migrated to head, with answers left in flight by a crash marked interrupted.

    `first=False` is for a worker of `tokbot run --workers N`: its supervisor has migrated the
    database and marked every answer of the last run interrupted before starting the workers,
    so a worker (or its restart) must not mark the answers its siblings are streaming."""
    store = await _open_database(settings, migrate=first)
    sweeper: asyncio.Task[None] | None = None
    try:
        if first or settings.stale_answer_seconds > 0:
            await _mark_stale_answers(store, settings.stale_answer_seconds)
        if settings.stale_answer_seconds > 0:
            sweeper = asyncio.create_task(
                _sweep_stale_answers(store, settings.stale_answer_seconds)
            )
        if first:
            # Platforms redeliver events for minutes; a week of ids is ample and keeps the
            # table small.
            await store.prune_inbox(EVENT_MEMORY_SECONDS)
        yield store
    finally:
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        await store.close()


async def _open_database(settings: Settings, *, migrate: bool = True) -> Store:
    """The store, reachable and (with `migrate`) migrated; a database still starting is waited
    for (boundedly), and failing to reach it is a SettingsError of one line that says how to
    fix it."""
    url = settings.database_url
    store: Store | None = None
    try:
        store = await Store.open(url, vector_window=settings.vector_window)
        await wait_until_reachable(store.ping, url, settings.database_wait_seconds)
        if migrate:
            await store.upgrade()
        return store
    except Exception as exc:
        if store is not None:
            with contextlib.suppress(Exception):
                await store.close()
        problem = describe(exc, url)
        if problem is None:
            raise
        raise SettingsError(problem) from None


async def _mark_stale_answers(store: Store, stale_after: float) -> None:
    """Answers left PENDING by a crashed process (this one or, with replicas, another) become
    INTERRUPTED; those younger than `stale_after` may still be streaming elsewhere."""
    before = time.time() - stale_after if stale_after > 0 else None
    interrupted = await store.mark_pending_interrupted(before=before)
    if interrupted:
        log.warning("marked %d answer(s) interrupted by a crash or shutdown", interrupted)


async def _sweep_stale_answers(store: Store, stale_after: float) -> None:
    while True:
        await asyncio.sleep(stale_after / 2)
        try:
            await _mark_stale_answers(store, stale_after)
        except Exception:  # the database may be briefly away; the next sweep retries
            log.warning("could not mark stale answers", exc_info=True)


@asynccontextmanager
async def open_core(
    settings: Settings, endpoint: TokModelEndpoint, *, first: bool = True
) -> AsyncIterator[Core]:
    """The core over its store and TokModel client (`first`: see `open_store`)."""
    async with open_store(settings, first=first) as store:
        metrics = Metrics()
        client = TokModelClient(
            endpoint.base_url,
            endpoint.api_key,
            timeout=settings.tokmodel_timeout,
            max_retries=settings.tokmodel_max_retries,
            retry_budget=settings.tokmodel_retry_budget,
            observer=metrics.observe_tokmodel,
        )
        async with client:
            core = Core(settings, store, client, metrics=metrics)
            # Events that dead processes acknowledged are answered once adapters offer to
            # (`Inbox.can_answer`); until then they wait in the database.
            await core.inbox.start(core.handle)
            await _start_embedder(core)
            try:
                yield core
            finally:
                if core.embedder is not None:
                    await core.embedder.stop()  # (rows it was embedding stay queued)
                await core.inbox.stop()
                await core.folding.drain()  # (folds started by the last answers)
                await core.alerts.close()


async def _start_embedder(core: Core) -> None:
    """Start embedding queued rows in the background, and say once which recall is in use."""
    if core.embedder is None:
        log.info("team memory: embeddings off (TOKBOT_EMBEDDINGS); recall is full-text only")
        return
    try:
        mode = await core.store.vectors.describe_index()
    except Exception:  # (only what the log says depends on it)
        mode = "vector index unknown (could not ask the database)"
    log.info("team memory: embeddings by %s; %s", core.embedder.config.model, mode)
    core.embedder.start()


@asynccontextmanager
async def open_stand_in() -> AsyncIterator[TokModelEndpoint]:
    """An in-process TokModel stand-in on loopback, for trying tokbot with no key."""
    key = "stand-in-" + secrets.token_hex(8)
    fake = FakeTokModel(api_key=key, chunk_delay=0.03)
    url = await fake.start("127.0.0.1", 0)
    try:
        yield TokModelEndpoint(url, key)
    finally:
        await fake.stop()

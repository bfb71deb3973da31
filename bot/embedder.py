"""Embeddings for team memory, made in the background: kept messages and people's turns are
queued by the database itself (migration 0011's triggers) and embedded here in batches, one
`/v1/embeddings` request per batch, with their vectors written beside them.

It never delays an answer: it waits while answers are in flight (up to PAUSE_LIMIT seconds, so
a busy bot still embeds), yields between batches, and a failing TokModel only makes it back off
(logged once). It resumes after a crash by itself: what is queued stays queued until its vector
is written. Each batch's usage is recorded for /usage per channel, as the bot's own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from bot.conversation import estimate_tokens
from bot.domain import BOT_AUTHOR, ConversationKey
from bot.store import Store
from bot.store.vectors import PendingText
from bot.tokmodel.client import TokModelClient
from bot.tokmodel.errors import BadRequest, Timeout, TokModelError
from bot.tokmodel.types import Usage

log = logging.getLogger(__name__)

#: Seconds between looks at the queue when nothing woke the embedder.
POLL_SECONDS = 2.0
#: Longest the embedder waits for answers in flight to finish before a batch anyway.
PAUSE_LIMIT = 2.0
#: How often it looks whether answers are still in flight, while it waits for them.
PAUSE_STEP = 0.05
#: Back-off after a failed batch: doubled each time, up to the last figure.
BACKOFF_FIRST, BACKOFF_LAST = 5.0, 300.0
#: Characters of a text sent to be embedded (about 2,000 tokens: well inside the models'
#: 8,192-token inputs; what a message is about is in its beginning).
MAX_EMBED_CHARS = 8000
#: Seconds a recall waits for its query's vector before going on without it.
QUERY_TIMEOUT = 3.0


@dataclass(frozen=True)
class EmbeddingConfig:
    model: str
    dimensions: int | None  # None: the model's own length
    batch: int


class Embedder:
    """Embeds queued rows in a background task (`start`/`stop` with the core), and a recall's
    query on demand (`embed_query`)."""

    def __init__(
        self,
        store: Store,
        tokmodel: TokModelClient,
        config: EmbeddingConfig,
        *,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._store = store
        self._tokmodel = tokmodel
        self.config = config
        self._busy = busy
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff = 0.0
        self._failure_logged = False
        self._query_failure_logged = False
        #: Rows embedded by this process (benchmarks, tests).
        self.embedded = 0
        #: Recalls' query requests in flight (finished after their recall stopped waiting).
        self._queries: set[asyncio.Task[list[float] | None]] = set()

    # -- the background task --------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="embedder")

    async def stop(self) -> None:
        """Stop at once: a batch in flight is dropped (its rows stay queued for next time), and
        so are recalls' query requests."""
        task, self._task = self._task, None
        tasks = [t for t in (task, *self._queries) if t is not None]
        for each in tasks:
            each.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        """Something was queued: look now rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.drain()
                self._backoff = 0.0
            except Exception as exc:  # TokModel or the database: wait, then try again
                self._note_failure(exc)
                self._backoff = min(BACKOFF_LAST, max(BACKOFF_FIRST, self._backoff * 2))
            if self._backoff:
                await asyncio.sleep(self._backoff)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    def _note_failure(self, exc: Exception) -> None:
        level = logging.DEBUG if self._failure_logged else logging.WARNING
        self._failure_logged = True
        status = f" (status {exc.status})" if isinstance(exc, TokModelError) else ""
        log.log(
            level,
            "embedding team memory failed: %s%s; retrying in the background",
            type(exc).__name__,
            status,
        )

    async def drain(self) -> int:
        """Embed queued rows, batch after batch, until none are left; return how many were
        embedded. A TokModel or database failure is raised (the rows stay queued)."""
        done = 0
        while True:
            await self._quiet()
            batch = await self._store.vectors.pending(self.config.batch)
            if not batch:
                return done
            done += await self._embed_batch(batch)
            await asyncio.sleep(0)  # let answers' work go first

    async def _quiet(self) -> None:
        """Wait while answers are in flight (up to PAUSE_LIMIT seconds)."""
        waited = 0.0
        while self._busy() and waited < PAUSE_LIMIT:
            await asyncio.sleep(PAUSE_STEP)
            waited += PAUSE_STEP

    async def _embed_batch(self, batch: list[PendingText]) -> int:
        texts = [p for p in batch if p.content and p.content.strip()]
        vectors: list[list[float]] = []
        usage: Usage | None = None
        if texts:
            try:
                result = await self._tokmodel.embed(
                    [p.content[:MAX_EMBED_CHARS] for p in texts if p.content],
                    model=self.config.model,
                    dimensions=self.config.dimensions,
                )
            except BaseException as exc:  # (stopped too: the entries go back at once)
                if not isinstance(exc, BadRequest):
                    await self._release(batch)
                    raise
                # Not these texts' fault that can be fixed by waiting: drop them from the queue
                # (they are found by the full-text index still), or they would block it.
                self._note_failure(exc)
                result = None
            if result is not None:
                vectors, usage = result.vectors, result.usage
        await self._quiet()  # (the write waits for answers in flight, not they for it)
        by_row = dict(zip((p.queue_id for p in texts), vectors, strict=False))
        written = await self._store.vectors.store(
            [(p, by_row.get(p.queue_id)) for p in batch], model=self.config.model
        )
        self.embedded += written
        if vectors:
            await self._record_usage(texts, usage)
        return written

    async def _release(self, batch: list[PendingText]) -> None:
        """Give the batch's entries back (for the retry after the back-off); stopping while
        this runs leaves them claimed, and taken again after their claim runs out."""
        try:
            await self._store.vectors.release(batch)
        except Exception:
            log.warning("could not give back the embedding queue's entries", exc_info=True)

    async def _record_usage(self, texts: list[PendingText], usage: Usage | None) -> None:
        """The batch's tokens, shared among its channels by their texts' length."""
        chars: dict[ConversationKey, int] = {}
        for p in texts:
            if p.channel is not None and p.content:
                chars[p.channel] = chars.get(p.channel, 0) + len(p.content[:MAX_EMBED_CHARS])
        total_chars = sum(chars.values()) or 1
        tokens = usage.total_tokens if usage is not None and usage.total_tokens else 0
        tokens = tokens or math.ceil(total_chars / 4)  # (none reported: estimated)
        for channel, count in chars.items():
            share = max(1, round(tokens * count / total_chars))
            await self._store.record_usage(
                channel,
                user_id=BOT_AUTHOR.id,
                command="embed",
                model=self.config.model,
                usage=Usage(share, 0, share),
            )

    # -- a recall's query -----------------------------------------------------------------

    async def embed_query(
        self, key: ConversationKey, query: str, *, user_id: str
    ) -> list[float] | None:
        """The vector of a recall's query (one request, QUERY_TIMEOUT at most), its usage
        recorded for `user_id`; None when TokModel fails (logged once): recall goes on with
        the full-text order. Once asked, the request finishes and is counted even if recall
        stops waiting for it (cancels this: nothing matched), as TokModel charges it."""
        request = asyncio.create_task(self._ask_query(key, query, user_id))
        self._queries.add(request)
        request.add_done_callback(self._queries.discard)
        return await asyncio.shield(request)

    async def _ask_query(
        self, key: ConversationKey, query: str, user_id: str
    ) -> list[float] | None:
        text = query[:MAX_EMBED_CHARS]
        try:
            result = await asyncio.wait_for(
                self._tokmodel.embed(
                    [text], model=self.config.model, dimensions=self.config.dimensions
                ),
                QUERY_TIMEOUT,
            )
        except Exception as exc:  # (any failure: recall goes on without vectors)
            if isinstance(exc, TimeoutError | Timeout):  # it went out: TokModel may charge it
                await self._count_query(key, user_id, estimate_tokens(text))
            if not self._query_failure_logged:
                self._query_failure_logged = True
                log.warning(
                    "TokModel embeddings failed (%s); recall uses the full-text order",
                    type(exc).__name__,
                )
            return None
        tokens = (result.usage.total_tokens if result.usage else 0) or estimate_tokens(text)
        await self._count_query(key, user_id, tokens)
        return result.vectors[0] if result.vectors else None

    async def _count_query(self, key: ConversationKey, user_id: str, tokens: int) -> None:
        try:
            await self._store.record_usage(
                key.channel_key,
                user_id=user_id,
                command="embed",
                model=self.config.model,
                usage=Usage(tokens, 0, tokens),
            )
        except Exception:  # counting must not cost the recall
            log.warning("could not record the usage of a recall's embedding", exc_info=True)

"""Team memory's recall step: the database's full-text candidates for a question plus building
the context note, without TokModel's rerank (a network call, measured by TokModel, not us).
One channel with many kept messages vs one with 10^3, in the same database; SQLite always,
PostgreSQL too when TOKBOT_BENCH_POSTGRES_URL names a database (its tables are replaced)."""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bench.harness import Figure, median
from bot.domain import ConversationKey
from bot.memory import Recalled, context_note, query_words
from bot.store import Store
from bot.store.memory import MemoryStore, ObservedMessage

QUESTION = "what did we decide about the deploy window for the release?"
SMALL = 1_000
BATCH = 5_000
#: Words of the filler: 2,000 made-up words, so each appears in about 0.6 % of the messages
#: (the question's words too, as in a real channel where "deploy" comes up now and then).
_VOCABULARY = [f"w{n}" for n in range(1_990)] + [
    "deploy", "window", "decide", "release", "lunch", "coffee", "review", "build", "test", "ship",
]  # fmt: skip


def _filler(rng: random.Random, key: ConversationKey, n: int) -> ObservedMessage:
    words = " ".join(rng.choice(_VOCABULARY) for _ in range(12))
    return ObservedMessage(key, f"{key.channel}-{n}", "u1", "Bob", words, 1.7e9 + n, None)


async def _fill(memory: MemoryStore, key: ConversationKey, count: int) -> None:
    rng = random.Random(count)
    for start in range(0, count, BATCH):
        batch = [_filler(rng, key, n) for n in range(start, min(count, start + BATCH))]
        await memory.observe_many(batch)


async def _recall_step(memory: MemoryStore, key: ConversationKey, limit: int) -> float:
    started = time.perf_counter()
    found = await memory.candidates(key, query_words(QUESTION), limit=limit)
    recalled = [Recalled(c.author_name, c.created_at, c.content, c.link) for c in found[:5]]
    context_note(recalled)
    return time.perf_counter() - started


async def _measure(url: str, big: int, runs: int, engine: str) -> list[Figure]:
    store = await Store.open(url)
    try:
        await store.upgrade()
        big_key = ConversationKey("bench", "w", "big")
        small_key = ConversationKey("bench", "w", "small")
        await _fill(store.memory, big_key, big)
        await _fill(store.memory, small_key, SMALL)
        if engine == "PostgreSQL":
            # As autovacuum would: the GIN index's pending list merged, statistics fresh.
            async with store.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE observed_messages"))
        for key in (big_key, small_key):  # warm the caches and the compiled statements
            await _recall_step(store.memory, key, 30)
        large, small = [], []
        for _ in range(runs):
            large.append(await _recall_step(store.memory, big_key, 30))
            small.append(await _recall_step(store.memory, small_key, 30))
    finally:
        await store.close()
    p50, p50_small = median(large), median(small)
    ratio = p50 / p50_small
    return [
        Figure(
            f"recall step, {engine}, {big:,} kept messages in the channel, p50",
            f"{p50 * 1000:.1f} ms",
            "<= 20 ms",
            p50 <= 0.020,
        ),
        Figure(
            f"recall step, {engine}, {big:,} vs {SMALL:,} kept messages, p50 ratio",
            f"{ratio:.2f} ({p50 * 1000:.1f} vs {p50_small * 1000:.1f} ms)",
            "<= 1.5",
            ratio <= 1.5,
        ),
    ]


async def recall(big: int, runs: int) -> list[Figure]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'memory.db'}"
        figures = await _measure(url, big, runs, "SQLite")
    postgres = os.environ.get("TOKBOT_BENCH_POSTGRES_URL")
    if postgres:
        await _reset_postgres(postgres)
        figures += await _measure(postgres, big, runs, "PostgreSQL")
    return figures


async def _reset_postgres(url: str) -> None:
    store = await Store.open(url)
    try:
        async with store.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await store.close()

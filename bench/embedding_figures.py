"""Team memory's background embeddings: how many kept messages a second the embedder embeds
(the stand-in in its own process, no added latency: the bot's side and the stand-in's), and
what it costs the answers: /ask's p50 (stand-in at 200 ms latency, as core_figures) while the
embedder works through a queue, against the same with it stopped, interleaved; and the hybrid
step of a recall (the candidates' vectors read by primary key, and their similarity)."""

from __future__ import annotations

import asyncio
import random
import time

from bench.core_figures import timed_ask
from bench.harness import Figure, bench_core, median, stand_in
from bot.core import Core
from bot.domain import ConversationKey
from bot.embedder import Embedder, EmbeddingConfig
from bot.store.memory import Candidate, ObservedMessage
from bot.store.vectors import similarity
from bot.vector_recall import fuse

KEY = ConversationKey("bench", "w", "kept")
BATCH = 5_000
#: Seconds before each timed /ask, so the embedder (when running) has a batch in flight.
GAP = 0.25
_VOCABULARY = [f"w{n}" for n in range(1_990)] + [
    "deploy", "window", "decide", "release", "lunch", "coffee", "review", "build", "test", "ship",
]  # fmt: skip


async def _keep(core: Core, count: int, *, first: int = 0) -> None:
    """`count` kept messages of 12 words (queued for embedding by the database's triggers)."""
    rng = random.Random(first)
    for start in range(first, first + count, BATCH):
        batch = [
            ObservedMessage(
                KEY, f"m{n}", "u1", "Bob", " ".join(rng.choices(_VOCABULARY, k=12)), 1.7e9 + n
            )
            for n in range(start, min(first + count, start + BATCH))
        ]
        await core.store.memory.observe_many(batch)


def _embedder(core: Core) -> Embedder:
    settings = core.settings
    config = EmbeddingConfig(
        settings.embedding_model, settings.embedding_dimensions or None, settings.embedding_batch
    )
    return Embedder(core.store, core.tokmodel, config)


async def throughput(messages: int) -> list[Figure]:
    """Kept messages embedded per second, from a queue of `messages`."""
    async with stand_in() as tokmodel, bench_core(tokmodel.url, TOKBOT_EMBEDDINGS="off") as core:
        await _keep(core, messages)
        embedder = _embedder(core)
        started = time.perf_counter()
        done = await embedder.drain()
        seconds = time.perf_counter() - started
        assert done == messages and await core.store.vectors.queued() == 0
        hybrid = await _hybrid_step(core, messages, runs=30)
    return [
        Figure(
            f"background embedding of {messages:,} kept messages (batches of 64, no latency)",
            f"{messages / seconds:,.0f} messages/s ({seconds:.1f} s)",
            "-",
            None,
        ),
        Figure(
            f"recall's hybrid step (60 candidates' vectors by key + similarity), "
            f"{messages:,} embedded, p50",
            f"{hybrid * 1000:.2f} ms",
            "-",
            None,
        ),
    ]


async def _hybrid_step(core: Core, messages: int, runs: int) -> float:
    """What vectors add to a recall past the query's own embedding: 30 candidates of each
    source (all kept messages here) read by primary key, their similarity, the merge."""
    config = _embedder(core).config
    query = [1.0] + [0.0] * ((config.dimensions or 256) - 1)
    rng = random.Random(7)
    times = []
    for _ in range(runs):
        ids = rng.sample(range(1, messages + 1), 60)
        found = [Candidate("message", i, "Bob", "", 0.0, None, rank) for rank, i in enumerate(ids)]
        started = time.perf_counter()
        stored = await core.store.vectors.vectors(
            "message", ids, model=config.model, dims=len(query)
        )
        near = {("message", i): similarity(query, v) for i, v in stored.items()}
        fuse(found, near)
        times.append(time.perf_counter() - started)
    return median(times)


async def answer_latency(queued: int, runs: int) -> list[Figure]:
    """/ask p50 (200 ms latency) with the embedder working through `queued` kept messages vs
    stopped, interleaved."""
    async with stand_in() as tokmodel, bench_core(tokmodel.url, TOKBOT_EMBEDDINGS="on") as core:
        embedder = core.embedder
        assert embedder is not None
        await embedder.stop()
        await _keep(core, queued)
        await tokmodel.set_latency(0.2)
        await timed_ask(core, "warm-up")
        running, idle = [], []
        for index in range(runs):
            embedder.start()
            embedder.wake()
            await asyncio.sleep(GAP)
            running.append((await timed_ask(core, f"c{index % 10}"))[0])
            await embedder.stop()
            await asyncio.sleep(GAP)
            idle.append((await timed_ask(core, f"c{index % 10}"))[0])
        left = await core.store.vectors.queued()
    ratio = median(running) / median(idle)
    return [
        Figure(
            "/ask p50 while the embedder runs ÷ idle (200 ms latency)",
            f"{ratio:.3f} ({median(running) * 1000:.1f} vs {median(idle) * 1000:.1f} ms; "
            f"{embedder.embedded:,} embedded meanwhile, {left:,} still queued)",
            "<= 1.1",
            ratio <= 1.1 and left > 0,
        )
    ]

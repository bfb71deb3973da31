"""Vectors in recall: the full-text index's candidates re-ordered by how near their stored
vectors are to the query's (a hybrid order, before TokModel's rerank).

Neither engine here has a vector index tokbot can use (see `detect_vector_index`), so the
vectors are read by primary key for the candidates the full-text index already gave: bounded
work (a few dozen rows), and never a scan of the channel's history. The best by each order go
on to TokModel's rerank, in the two orders merged by reciprocal rank fusion (the order kept if
rerank fails), so a message near the question that the full-text ranking put low (a long
message, or one whose words the index weighs less) still comes up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence

from bot.domain import ConversationKey
from bot.embedder import Embedder
from bot.store.memory import Candidate
from bot.store.vectors import VectorStore, similarity
from bot.store.vectors import unit as unit_vector

log = logging.getLogger(__name__)

#: The full-text index is asked for this many times the usual candidates, so vectors can bring
#: up ones its own ranking would have cut: the best `candidates` by each order go on to rerank.
POOL_FACTOR = 3
#: Reciprocal rank fusion's constant (Cormack et al. 2009 use 60): how much the top ranks
#: outweigh the rest.
RRF_K = 60


class VectorRecall:
    """What `Memory.recall` asks of vectors: the query's, and the hybrid order."""

    def __init__(self, vectors: VectorStore, embedder: Embedder) -> None:
        self._vectors = vectors
        self._embedder = embedder

    def query_vector(
        self, key: ConversationKey, query: str, *, user_id: str
    ) -> asyncio.Task[list[float] | None]:
        """The query's vector, asked for at once in a task, so the request travels while the
        full-text candidates are read (None: TokModel failed, logged once)."""
        return asyncio.create_task(self._embedder.embed_query(key, query, user_id=user_id))

    async def order(
        self,
        found: list[Candidate],
        wanted: Awaitable[list[float] | None],
        *,
        keep: int,
    ) -> list[Candidate]:
        """Of `found` (in the full-text order), the best `keep` by that order and the `keep`
        nearest the query (`wanted`: its vector) by their vectors, in the two orders' merged
        order. Without the query's vector, the best `keep` by the full-text order."""
        query = await wanted
        if query is None:
            return found[:keep]
        query_vector = unit_vector(query)
        config = self._embedder.config
        dims = len(query_vector)
        near: dict[tuple[str, int], float] = {}
        for source in ("message", "turn"):
            ids = [c.id for c in found if c.source == source]
            stored = await self._vectors.vectors(source, ids, model=config.model, dims=dims)
            near.update({(source, i): similarity(query_vector, v) for i, v in stored.items()})
        nearest = sorted(near, key=lambda k: -near[k])[:keep]
        chosen = {(c.source, c.id) for c in found[:keep]} | set(nearest)
        return [c for c in fuse(found, near) if (c.source, c.id) in chosen]


def fuse(found: Sequence[Candidate], near: dict[tuple[str, int], float]) -> list[Candidate]:
    """Reciprocal rank fusion of the full-text order (`found`'s) and the order by `near`
    (similarity per (source, id); candidates without a vector yet have only their full-text
    rank)."""
    by_vector = sorted(near, key=lambda k: -near[k])
    vector_rank = {k: rank for rank, k in enumerate(by_vector)}
    scores = {}
    for rank, candidate in enumerate(found):
        score = 1.0 / (RRF_K + rank)
        place = vector_rank.get((candidate.source, candidate.id))
        if place is not None:
            score += 1.0 / (RRF_K + place)
        scores[(candidate.source, candidate.id)] = score
    return sorted(found, key=lambda c: -scores[(c.source, c.id)])

"""Vectors in recall: the full-text index's candidates, with the vector index's nearest where
the engine has one, in a hybrid order by how near their stored vectors are to the query's
(before TokModel's rerank).

The vector index (`bot.store.vector_index`) finds messages near the question that share none
of its words; without one, only the full-text candidates are ordered. Either way the vectors
compared are read by primary key for a few dozen candidates: never a scan of the channel's
history. The best by each order go on to TokModel's rerank, the two orders merged by
reciprocal rank fusion (the order kept if rerank fails), so a message near the question that
the full-text ranking put low (a long message, or one whose words the index weighs less) still
comes up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence

from bot.domain import ConversationKey
from bot.embedder import Embedder
from bot.store.memory import Candidate, MemoryStore
from bot.store.vectors import VectorStore, similarity
from bot.store.vectors import unit as unit_vector

log = logging.getLogger(__name__)

#: Without a vector index, the full-text index is asked for this many times the usual
#: candidates, so vectors can bring up ones its own ranking would have cut: the best
#: `candidates` by each order go on to rerank. With one, the index brings its own nearest, and
#: full text is asked for the usual number (a third of the rows read in a busy channel).
POOL_FACTOR = 3
#: Reciprocal rank fusion's constant (Cormack et al. 2009 use 60): how much the top ranks
#: outweigh the rest.
RRF_K = 60
#: The `rank` of a candidate only the vector index found (it has no full-text rank).
VECTOR_ONLY = -1


class VectorRecall:
    """What `Memory.recall` asks of vectors: the query's, and the hybrid order."""

    def __init__(self, vectors: VectorStore, embedder: Embedder, memory: MemoryStore) -> None:
        self._vectors = vectors
        self._embedder = embedder
        self._memory = memory
        self._index_failed_logged = False

    async def has_index(self) -> bool:
        """Whether a vector index can find messages that share no word with a question."""
        return await self._vectors.index() is not None

    async def pool(self, candidates: int) -> int:
        """How many full-text candidates to ask for (see POOL_FACTOR)."""
        return candidates if await self.has_index() else candidates * POOL_FACTOR

    def query_vector(
        self, key: ConversationKey, query: str, *, user_id: str
    ) -> asyncio.Task[list[float] | None]:
        """The query's vector, asked for at once in a task, so the request travels while the
        full-text candidates are read (None: TokModel failed, logged once)."""
        return asyncio.create_task(self._embedder.embed_query(key, query, user_id=user_id))

    async def order(
        self,
        key: ConversationKey,
        found: list[Candidate],
        wanted: Awaitable[list[float] | None],
        *,
        keep: int,
    ) -> list[Candidate]:
        """Of `found` (in the full-text order) and the vector index's `keep` nearest the query
        (`wanted`: its vector), the best `keep` by the full-text order and the `keep` nearest
        by their vectors, in the two orders' merged order. Without the query's vector, the
        best `keep` by the full-text order."""
        query = await wanted
        if query is None:
            return found[:keep]
        query_vector = unit_vector(query)
        by_text = found[:keep]
        found = found + await self._indexed(key, found, query_vector, keep)
        model = self._embedder.config.model
        dims = len(query_vector)
        near: dict[tuple[str, int], float] = {}
        for source in ("message", "turn"):
            ids = [c.id for c in found if c.source == source]
            stored = await self._vectors.vectors(source, ids, model=model, dims=dims)
            near.update({(source, i): similarity(query_vector, v) for i, v in stored.items()})
        nearest = sorted(near, key=lambda k: -near[k])[:keep]
        chosen = {(c.source, c.id) for c in by_text} | set(nearest)
        return [c for c in fuse(found, near) if (c.source, c.id) in chosen]

    async def _indexed(
        self, key: ConversationKey, found: list[Candidate], query: list[float], keep: int
    ) -> list[Candidate]:
        """The vector index's `keep` nearest the query in the channel that `found` lacks
        (none without an index, or when it fails: logged once)."""
        try:
            index = await self._vectors.index()
            if index is None:
                return []
            refs = await index.nearest(
                key.channel_key, query, model=self._embedder.config.model, limit=keep
            )
        except Exception as exc:  # (any failure: the full-text candidates still answer)
            if not self._index_failed_logged:
                self._index_failed_logged = True
                log.warning("vector index search failed (%s); recall uses full text", exc)
            return []
        have = {(c.source, c.id) for c in found}
        missing = [ref for ref in refs if ref not in have]
        return await self._memory.candidates_by_id(key, missing, rank=VECTOR_ONLY)


def fuse(found: Sequence[Candidate], near: dict[tuple[str, int], float]) -> list[Candidate]:
    """Reciprocal rank fusion of the full-text order (`found`'s, by `rank`; a candidate only the
    vector index found has none) and the order by `near` (similarity per (source, id);
    candidates without a vector yet have only their full-text rank)."""
    by_vector = sorted(near, key=lambda k: -near[k])
    vector_rank = {k: rank for rank, k in enumerate(by_vector)}
    scores = {}
    for rank, candidate in enumerate(found):
        score = 1.0 / (RRF_K + rank) if candidate.rank != VECTOR_ONLY else 0.0
        place = vector_rank.get((candidate.source, candidate.id))
        if place is not None:
            score += 1.0 / (RRF_K + place)
        scores[(candidate.source, candidate.id)] = score
    return sorted(found, key=lambda c: -scores[(c.source, c.id)])

"""Team memory: a channel with `/memory on` has its messages kept (those not addressed to the
bot; adapters report them, their edits and deletions), and `/recall` or an answer finds the
ones that matter: candidates from the database's full-text index, ordered by TokModel's
rerank (the index's own order when rerank fails)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.conversation import estimate_tokens
from bot.domain import BOT_AUTHOR, ConversationKey
from bot.store.memory import Candidate, MemoryStore
from bot.store.memory import ObservedMessage as ObservedMessage  # what adapters report
from bot.tokmodel.client import TokModelClient
from bot.tokmodel.types import Usage
from bot.vector_recall import VectorRecall

log = logging.getLogger(__name__)

#: Records a TokModel request of team memory for /usage: (channel, user id, command, model,
#: usage); `Store.record_usage`.
RecordUsage = Callable[..., Awaitable[None]]

#: Seconds the channels with memory on are trusted from this process's copy (another
#: replica's `/memory` is seen within this; this process's own at once).
ENABLED_TTL = 5.0
#: Words of a recall query at most (the rest are ignored).
MAX_QUERY_WORDS = 16
#: Longest recalled text shown or put in a context, in characters.
MAX_RECALLED_CHARS = 500

# Words too common to find anything by (they would make every message a candidate).
_STOP_WORDS = frozenset(
    """a about after all also am an and any are as at be been but by can could did do does
    for from had has have he her him his how i if in into is it its just me my no not of on
    or our out she so than that the their them then there these they this to up us was we
    were what when where which who why will with would you your tokbot""".split()
)
_WORD = re.compile(r"[^\W_]+")


def query_words(query: str) -> list[str]:
    """The words a recall searches for: letters and digits only, lower case, no common words,
    each once, in order."""
    words: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in _STOP_WORDS and len(word) > 1 and word not in words:
            words.append(word)
    return words[:MAX_QUERY_WORDS]


@dataclass(frozen=True)
class Recalled:
    """A remembered message, ready to show: who, when (epoch seconds), what, where."""

    author: str
    created_at: float
    text: str
    link: str | None

    @property
    def date(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.created_at))

    def source(self) -> str:
        """ "alice, 2026-11-28" with its link where there is one (Markdown)."""
        where = f" ([link]({self.link}))" if self.link else ""
        return f"{self.author}, {self.date}{where}"


class Memory:
    """What the core knows of team memory; `Core.memory` is one."""

    def __init__(
        self,
        store: MemoryStore,
        tokmodel: TokModelClient,
        *,
        rerank_model: str,
        candidates: int,
        scrub: Callable[[str], str],
        vectors: VectorRecall | None = None,
        record_usage: RecordUsage | None = None,
    ) -> None:
        self._store = store
        self._vectors = vectors  # None: embeddings off, full-text order only
        self._record_usage = record_usage
        self._tokmodel = tokmodel
        self._rerank_model = rerank_model
        self._candidates = candidates
        self._scrub = scrub
        self._enabled: set[ConversationKey] = set()
        self._loaded_at = -ENABLED_TTL  # (never: read on first use)
        self._loading = asyncio.Lock()
        self._switches = 0  # /memory on|off in this process, so a read begun before is redone
        self._rerank_failed_logged = False

    # -- the switch ---------------------------------------------------------------------------

    async def enabled(self, key: ConversationKey) -> bool:
        """Whether the key's channel has memory on. The channels that have it are read all at
        once, at most every ENABLED_TTL seconds, so asking costs no database read per message."""
        if time.monotonic() - self._loaded_at >= ENABLED_TTL:
            async with self._loading:
                if time.monotonic() - self._loaded_at >= ENABLED_TTL:
                    switches = self._switches
                    self._enabled = await self._store.enabled_channels()
                    # A /memory here while reading: read again next time.
                    fresh = switches == self._switches
                    self._loaded_at = time.monotonic() if fresh else -ENABLED_TTL
        return key.channel_key in self._enabled

    async def switch(self, key: ConversationKey, on: bool, *, by: str) -> None:
        await self._store.set_enabled(key.channel_key, on, by=by)
        if on:
            self._enabled.add(key.channel_key)
        else:
            self._enabled.discard(key.channel_key)
        self._switches += 1

    async def count(self, key: ConversationKey) -> int:
        return await self._store.count(key.channel_key)

    async def forget(self, key: ConversationKey) -> int:
        return await self._store.forget(key.channel_key)

    # -- what adapters report -----------------------------------------------------------------

    async def observe(self, message: ObservedMessage) -> bool:
        """Keep a channel message not addressed to the bot, if its channel has memory on (and
        it says something); return whether it was kept. Secrets are scrubbed first."""
        content = self._scrub(message.content).strip()
        if not content or not await self.enabled(message.key):
            return False
        await self._store.observe(_with_content(message, content))
        return True

    async def edited(self, key: ConversationKey, message_id: str, content: str) -> bool:
        """A message was edited: its kept text (if kept) becomes the new one."""
        content = self._scrub(content).strip()
        if not content:
            return await self._store.delete(key.channel_key, message_id)
        return await self._store.edit(key.channel_key, message_id, content)

    async def deleted(self, key: ConversationKey, message_id: str) -> bool:
        """A message was deleted: so is its kept copy, at once (on or off)."""
        return await self._store.delete(key.channel_key, message_id)

    # -- recall --------------------------------------------------------------------------------

    async def candidates(
        self, key: ConversationKey, query: str, *, limit: int | None = None
    ) -> list[Candidate]:
        """The index's candidates for `query` in the channel (`limit` of each kind, by default
        TOKBOT_MEMORY_CANDIDATES), best first by the index's own order (observed messages and
        people's turns taken in turn), without duplicates."""
        limit = limit or self._candidates
        found = await self._store.candidates(key, query_words(query), limit=limit)
        found.sort(key=lambda c: (c.rank, c.source != "message"))
        seen: set[str] = set()
        unique = []
        for candidate in found:
            if candidate.content not in seen:
                seen.add(candidate.content)
                unique.append(candidate)
        return unique

    async def searches_meaning(self) -> bool:
        """Whether recall can find a message by its meaning alone (embeddings on and a vector
        index), so a question of only common words is still worth asking."""
        return self._vectors is not None and await self._vectors.has_index()

    async def recall(
        self,
        key: ConversationKey,
        query: str,
        *,
        limit: int,
        skip: frozenset[str] = frozenset(),
        user_id: str = BOT_AUTHOR.id,
    ) -> list[Recalled]:
        """The `limit` messages of the channel that best match `query` (texts in `skip`, e.g.
        the question itself, left out): the index's candidates, in a hybrid order with their
        vectors' nearness when embeddings are on, reranked by TokModel. TokModel's requests
        are recorded for /usage as `user_id`'s."""
        vectors = self._vectors
        # The query's vector is asked for while the index is read.
        wanted = vectors.query_vector(key, query, user_id=user_id) if vectors else None
        try:
            pool = await vectors.pool(self._candidates) if vectors else self._candidates
            found = await self.candidates(key, query, limit=pool)
            found = [c for c in found if c.content not in skip]
            if vectors is not None and wanted is not None:  # (even with no full-text match:
                # the vector index finds messages that share no word with the question)
                found = await vectors.order(key, found, wanted, keep=self._candidates)
                found = [c for c in found if c.content not in skip]
        finally:
            if wanted is not None and not wanted.done():
                wanted.cancel()  # (nothing to order, or a failure)
        if not found:
            return []
        ordered = await self._rerank(key, query, found, limit, user_id)
        return [
            Recalled(c.author_name, c.created_at, _shortened(c.content), c.link)
            for c in ordered[:limit]
        ]

    async def _rerank(
        self, key: ConversationKey, query: str, found: list[Candidate], limit: int, user_id: str
    ) -> list[Candidate]:
        if len(found) <= limit:  # all of them are shown: no TokModel call to pick among them
            return found
        try:
            results = await self._tokmodel.rerank(
                query, [c.content for c in found], model=self._rerank_model, top_n=limit
            )
        except Exception as exc:  # (any failure: the index's order still answers)
            if not self._rerank_failed_logged:
                self._rerank_failed_logged = True
                log.warning(
                    "TokModel rerank failed (%s); recall uses the full-text order",
                    type(exc).__name__,
                )
            return found
        await self._count_rerank(key, query, found, user_id)
        picked = [found[r.index] for r in results if 0 <= r.index < len(found)]
        return picked or found

    async def _count_rerank(
        self, key: ConversationKey, query: str, found: list[Candidate], user_id: str
    ) -> None:
        """Record a rerank for /usage (and budgets). Rerank answers report no tokens (Cohere
        bills "search units"): the query and documents are estimated as elsewhere."""
        if self._record_usage is None:
            return
        tokens = estimate_tokens(query) * len(found) + sum(
            estimate_tokens(c.content) for c in found
        )
        try:
            await self._record_usage(
                key.channel_key,
                user_id=user_id,
                command="rerank",
                model=self._rerank_model,
                usage=Usage(tokens, 0, tokens),
            )
        except Exception:  # counting must not cost the recall
            log.warning("could not record the usage of a rerank", exc_info=True)


def _with_content(message: ObservedMessage, content: str) -> ObservedMessage:
    return ObservedMessage(
        message.key,
        message.message_id,
        message.author_id,
        message.author_name,
        content,
        message.created_at,
        message.link,
    )


def _shortened(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= MAX_RECALLED_CHARS:
        return text
    return text[: MAX_RECALLED_CHARS - 1] + "…"


def context_note(recalled: list[Recalled]) -> str:
    """The recalled messages as a system message of an answer's context: quoted, each with its
    author and date (what people said, not instructions)."""
    lines = [
        "Earlier messages of this channel that may be relevant (quoted as people wrote them; "
        "cite them by author and date when you use them):"
    ]
    lines += [f"[{r.author}, {r.date}] {r.text}" for r in recalled]
    return "\n".join(lines)


def sources_line(recalled: list[Recalled]) -> str:
    """What ends an answer given recalled messages: their authors, dates and links."""
    return "\n\n_Sources: " + "; ".join(r.source() for r in recalled) + "_"

"""Team memory's embeddings: the queue the database keeps (migration 0011's triggers), the
background embedder (batches, resuming after a crash, edits and deletions, failures), recall
in a hybrid order, and their usage in /usage; on SQLite and PostgreSQL, against the stand-in."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bot.core import Core
from bot.domain import ConversationKey, TurnKind, TurnRole
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.store import Store
from bot.store.memory import ObservedMessage
from bot.store.vector_index_pg import PgVectorIndex
from bot.store.vectors import unpack_vector
from bot.tokmodel.fake import FakeTokModel, Fault, stand_in_embedding
from bot.vector_recall import fuse
from tests.conftest import API_KEY
from tests.platform import ALICE, KEY, RecordingReplier, message

EMBEDDINGS = "/v1/embeddings"
CHAT = "/v1/chat/completions"
MODEL = "openai/text-embedding-3-small"
FACT = "When is the deploy window? It is on Tuesday, after the standup"
QUESTION = "when is the deploy window on tuesday"
#: Messages with the question's words, some twice: both engines' full-text rankings put them
#: above FACT (which has each once, among others); FACT shares the most words with the
#: question (the common ones too, which the index leaves out), so its vector is the nearest.
FILLERS = (
    "deploy window tuesday deploy freeze",
    "tuesday deploy window deploy checklist",
    "window deploy tuesday window plan",
    "deploy deploy window tuesday",
    "tuesday window tuesday deploy",
    "window window deploy tuesday",
    "deploy tuesday window tuesday",
)


def observed(n: int, text: str) -> ObservedMessage:
    return ObservedMessage(
        KEY, f"msg-{n}", "u-bob", "Bob", text, 1_764_000_000.0 + n, f"https://x/{n}"
    )


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Wait for `check` to hold (the embedder works in the background)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


def embedded_inputs(fake: FakeTokModel) -> list[list[str]]:
    return [r.json["input"] for r in fake.requests if r.path == EMBEDDINGS and r.json]


@pytest.fixture
def settings_on(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def build(**overrides: str) -> Settings:
        return make_settings(TOKBOT_EMBEDDINGS="on", **overrides)

    return build


@pytest.fixture
async def core(settings_on: Callable[..., Settings], fake: FakeTokModel) -> AsyncIterator[Core]:
    async with open_core(settings_on(), TokModelEndpoint(fake.url, API_KEY)) as opened:
        yield opened


async def test_the_embedder_embeds_queued_rows_in_batches(
    settings_on: Callable[..., Settings], fake: FakeTokModel, replier: RecordingReplier
) -> None:
    settings = settings_on(TOKBOT_EMBEDDING_BATCH="4")
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        await core.memory.switch(KEY, True, by="u-admin")
        for n in range(9):
            assert await core.memory.observe(observed(n, f"note {n} about the deploy"))
        await core.handle(message("ask", "what about the deploy?"), replier)
        core.embedder.wake()  # type: ignore[union-attr]
        await until(lambda: _queue_empty(core.store))
        vectors = core.store.vectors
        stored = await vectors.vectors("message", list(range(1, 10)), model=MODEL, dims=256)
        assert len(stored) == 9
        assert sum(map(math.prod, zip(stored[1], stored[1], strict=True))) == pytest.approx(1.0)
        want = stand_in_embedding("note 0 about the deploy")
        assert list(stored[1]) == pytest.approx(want, abs=1e-5)
    inputs = embedded_inputs(fake)
    assert all(len(batch) <= 4 for batch in inputs)
    texts = [text for batch in inputs for text in batch]
    assert "Alice: what about the deploy?" not in texts  # people's turns as they said them
    # Nine messages, the question, and the question again as a recall's query (memory is on);
    # the answer is not embedded.
    assert texts.count("what about the deploy?") == 2 and len(texts) == 11
    assert all(r.json.get("dimensions") == 256 for r in fake.requests if r.path == EMBEDDINGS)


async def _queue_empty(store: Store) -> bool:
    """Every queued row embedded, and in the vector index (pgvector's first vectors of a new
    length reach it by its background copy)."""
    if await store.vectors.queued():
        return False
    index = await store.vectors.index()
    if isinstance(index, PgVectorIndex):
        await index.backfilled()
    return True


async def test_queued_rows_are_embedded_after_a_crash_and_failures_back_off(
    settings_on: Callable[..., Settings],
    fake: FakeTokModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = TokModelEndpoint(fake.url, API_KEY)
    fake.fail(Fault(status=500, times=-1, path=EMBEDDINGS))
    with caplog.at_level(logging.WARNING, logger="bot.embedder"):
        async with open_core(settings_on(), endpoint) as core:
            await core.memory.switch(KEY, True, by="u-admin")
            for n in range(5):
                await core.memory.observe(observed(n, f"fact {n}"))
            core.embedder.wake()  # type: ignore[union-attr]
            await until(lambda: _logged(caplog, "embedding team memory failed"))
            assert await core.store.vectors.queued() == 5  # nothing lost: still queued
    failures = [r for r in caplog.records if "embedding team memory failed" in r.getMessage()]
    assert len(failures) == 1 and "ServerError" in failures[0].getMessage()
    fake.clear()
    async with open_core(settings_on(), endpoint) as core:  # a new process: it goes on
        await until(lambda: _queue_empty(core.store))
        stored = await core.store.vectors.vectors("message", [1, 2, 3, 4, 5], model=MODEL, dims=256)
        assert sorted(stored) == [1, 2, 3, 4, 5]


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def test_edits_re_embed_and_deletions_drop_the_vector_at_once(store: Store) -> None:
    memory, vectors = store.memory, store.vectors
    await memory.set_enabled(KEY, True, by="u-admin")
    for n, text in enumerate(("kept as it is", "to be edited", "to be deleted")):
        await memory.observe(observed(n, text))
    pending = await vectors.pending(10)
    assert [p.content for p in pending] == ["kept as it is", "to be edited", "to be deleted"]
    # Edited and deleted while the embedder was asking TokModel: their vectors are not written.
    assert await memory.edit(KEY, "msg-1", "edited text")
    assert await memory.delete(KEY, "msg-2")
    vector = [1.0, 0.0, 0.0]
    assert await vectors.store([(p, vector) for p in pending], model=MODEL) == 1
    again = await vectors.pending(10)
    assert [(p.row_id, p.content) for p in again] == [(2, "edited text")]
    assert await vectors.store([(again[0], [0.0, 1.0, 0.0])], model=MODEL) == 1
    assert await vectors.queued() == 0
    stored = await vectors.vectors("message", [1, 2, 3], model=MODEL, dims=3)
    assert {k: list(v) for k, v in stored.items()} == {1: vector, 2: [0.0, 1.0, 0.0]}
    assert await vectors.vectors("message", [1], model="other/model", dims=3) == {}
    # An edit once embedded: the old vector goes, the row is queued again; a deletion: gone.
    assert await memory.edit(KEY, "msg-1", "edited once more")
    assert await memory.delete(KEY, "msg-0")
    assert await vectors.vectors("message", [1, 2], model=MODEL, dims=3) == {}
    assert [p.content for p in await vectors.pending(10)] == ["edited once more"]
    # The same content again (a redelivery) is not queued again.
    await memory.observe(observed(1, "edited once more"))
    assert await vectors.queued() == 1
    assert await memory.forget(KEY) == 1
    assert await vectors.queued() == 0


async def test_turns_are_queued_only_for_what_people_said(store: Store) -> None:
    await store.add_turn(
        KEY, role=TurnRole.USER, kind=TurnKind.TEXT, content="a question", author=ALICE
    )
    from bot.domain import BOT_AUTHOR

    await store.add_turn(
        KEY, role=TurnRole.ASSISTANT, kind=TurnKind.TEXT, content="an answer", author=BOT_AUTHOR
    )
    pending = await store.vectors.pending(10)
    assert [(p.source, p.content, p.channel) for p in pending] == [
        ("turn", "a question", ConversationKey(KEY.platform, KEY.workspace, KEY.channel))
    ]


def test_fusion_brings_up_what_the_vectors_find_near() -> None:
    from bot.store.memory import Candidate

    found = [Candidate("message", i, "Bob", f"m{i}", 0.0, None, i) for i in range(6)]
    near = {("message", 5): 0.9, ("message", 0): 0.1, ("message", 1): 0.2}
    # Ranks 0 and 1 in both stay first; the nearest, last by full text, comes third.
    assert [c.id for c in fuse(found, near)] == [0, 1, 5, 2, 3, 4]
    assert [c.id for c in fuse(found, {})] == list(range(6))  # no vectors: as it was


async def _facts_and_fillers(core: Core) -> None:
    await core.memory.switch(KEY, True, by="u-admin")
    assert await core.memory.observe(observed(1, FACT))
    for n, text in enumerate(FILLERS, 2):
        assert await core.memory.observe(observed(n, text))


@pytest.mark.parametrize("embeddings", ["on", "off"])
async def test_a_message_the_full_text_ranking_puts_low_is_recalled_by_its_vector(
    make_settings: Callable[..., Settings],
    fake: FakeTokModel,
    replier: RecordingReplier,
    embeddings: str,
) -> None:
    settings = make_settings(
        TOKBOT_EMBEDDINGS=embeddings, TOKBOT_MEMORY_CANDIDATES="3", TOKBOT_MEMORY_RECALLED="2"
    )
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        await _facts_and_fillers(core)
        # The full-text index alone ranks FACT below its best three.
        best = await core.memory.candidates(KEY, QUESTION, limit=3)
        assert FACT not in [c.content for c in best]
        if core.embedder is not None:
            core.embedder.wake()
            await until(lambda: _queue_empty(core.store))
        await core.handle(message("recall", QUESTION), replier)
        assert (FACT in replier.last) is (embeddings == "on")
        await core.handle(message("ask", QUESTION), replier)  # recall in answers: the same
    sent = [r.json["messages"] for r in fake.requests if r.path == CHAT and r.json][-1]
    notes = "\n".join(m["content"] for m in sent if m["role"] == "system")
    assert (f"[Bob, 2025-11-24] {FACT}" in notes) is (embeddings == "on")


async def test_failing_embeddings_and_rerank_still_answer_in_the_full_text_order(
    core: Core, fake: FakeTokModel, replier: RecordingReplier, caplog: pytest.LogCaptureFixture
) -> None:
    await _facts_and_fillers(core)
    core.embedder.wake()  # type: ignore[union-attr]
    await until(lambda: _queue_empty(core.store))
    fake.fail(Fault(status=500, times=-1, path=EMBEDDINGS))
    fake.fail(Fault(status=500, times=-1, path="/v1/rerank"))
    with caplog.at_level(logging.WARNING, logger="bot"):
        await core.handle(message("recall", QUESTION), replier)
        assert "What this channel said" in replier.last
        await core.handle(message("ask", QUESTION), replier)
        assert "You said" in replier.last and "Sources: Bob" in replier.last
        await core.handle(message("recall", QUESTION), replier)
    said = [r.getMessage() for r in caplog.records]
    assert len([m for m in said if "TokModel embeddings failed" in m]) == 1
    assert len([m for m in said if "rerank failed" in m]) == 1


async def test_usage_shows_team_memorys_embeddings_and_rerank(
    core: Core, replier: RecordingReplier
) -> None:
    await _facts_and_fillers(core)
    core.embedder.wake()  # type: ignore[union-attr]
    await until(lambda: _queue_empty(core.store))
    await core.handle(message("recall", QUESTION), replier)
    requests, tokens = await core.store.vectors.memory_usage(KEY)
    # The background batch (the bot's), the query's vector and the rerank (Alice's).
    assert requests == 3 and tokens > 0
    await core.handle(message("usage"), replier)
    assert "team memory (embeddings, rerank): 3 requests" in replier.last
    summary = await core.store.usage_summary(KEY, ALICE.id)
    assert summary.user_requests == 2  # the query's vector and the rerank are Alice's


async def test_rows_kept_while_embeddings_are_off_are_embedded_once_turned_on(
    make_settings: Callable[..., Settings], fake: FakeTokModel
) -> None:
    """Off, the database still queues what memory keeps (migration 0011's triggers): that
    backlog, one entry per row, is embedded once embeddings are turned on."""
    endpoint = TokModelEndpoint(fake.url, API_KEY)
    async with open_core(make_settings(TOKBOT_EMBEDDINGS="off"), endpoint) as core:
        assert core.embedder is None
        await _facts_and_fillers(core)
        assert await core.store.vectors.queued() == 1 + len(FILLERS)
    assert embedded_inputs(fake) == []
    async with open_core(make_settings(TOKBOT_EMBEDDINGS="on"), endpoint) as core:
        assert core.embedder is not None
        core.embedder.wake()
        await until(lambda: _queue_empty(core.store))
    assert sorted(sum(embedded_inputs(fake), [])) == sorted([FACT, *FILLERS])


async def test_a_query_vector_recall_stopped_waiting_for_is_still_counted(
    core: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    """Nothing in the channel matches: recall stops waiting for its query's vector (cancels
    it), but the request, once asked, still finishes and is recorded for /usage as the
    asker's: TokModel charges it."""
    await core.memory.switch(KEY, True, by="u-admin")
    fake.fail(Fault(delay=1.0, times=1, path=EMBEDDINGS))  # answered after recall is done
    await core.handle(message("recall", "zebra crossing"), replier)
    assert "zebra crossing" in replier.last  # (nothing found: said so)
    await until(lambda: _alices_requests(core, 1))
    assert embedded_inputs(fake) == [["zebra crossing"]]
    requests, tokens = await core.store.vectors.memory_usage(KEY)
    assert requests == 1 and tokens > 0


async def _alices_requests(core: Core, count: int) -> bool:
    return (await core.store.usage_summary(KEY, ALICE.id)).user_requests == count


async def test_stored_vectors_are_float32_bytes(store: Store) -> None:
    await store.memory.set_enabled(KEY, True, by="u-admin")
    await store.memory.observe(observed(1, "x"))
    pending = await store.vectors.pending(1)
    await store.vectors.store([(pending[0], [3.0, 4.0])], model=MODEL)
    stored = await store.vectors.vectors("message", [1], model=MODEL, dims=2)
    assert list(stored[1]) == pytest.approx([0.6, 0.8])  # stored as a unit vector
    assert unpack_vector(bytes(8)).tolist() == [0.0, 0.0]


async def test_embedders_claim_different_rows_and_give_back_failed_ones(store: Store) -> None:
    await store.memory.set_enabled(KEY, True, by="u-admin")
    for n in range(5):
        await store.memory.observe(observed(n, f"text {n}"))
    first, second = await store.vectors.pending(2), await store.vectors.pending(2)
    assert [p.row_id for p in first] == [1, 2] and [p.row_id for p in second] == [3, 4]
    await store.vectors.release(first)  # (its TokModel request failed)
    assert [p.row_id for p in await store.vectors.pending(10)] == [1, 2, 5]
    assert await store.vectors.pending(10) == []  # all claimed, none free

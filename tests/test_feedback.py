"""Buttons under answers, in the core: 👍/👎 feedback (stored, replaced, counted, shown in /usage
for admins) and Stop (only the asker; here at once, through the database across replicas)."""

from __future__ import annotations

import asyncio

from bot.conversation import build_context
from bot.core import (
    ALREADY_FINISHED,
    ANSWER_GONE,
    FEEDBACK_CHANGED,
    NOT_YOUR_ANSWER,
    STOPPED,
    STOPPING,
    Core,
)
from bot.domain import (
    AnswerControls,
    Author,
    FeedbackValue,
    Turn,
    TurnKind,
    TurnRole,
    TurnStatus,
)
from bot.handlers.chat import STOPPED_MARK
from bot.tokmodel.fake import FakeTokModel
from tests.platform import ADMIN, ALICE, KEY, RecordingReplier, message

BOB = Author("u-bob", "Bob")
POSITIVE, NEGATIVE = FeedbackValue.POSITIVE, FeedbackValue.NEGATIVE


class ShowingReplier(RecordingReplier):
    """Says when an answer's first words are on screen (not just its placeholder)."""

    def __init__(self) -> None:
        super().__init__()
        self.words_shown = asyncio.Event()

    async def edit(
        self, message_id: str, text: str, *, controls: AnswerControls | None = None
    ) -> None:
        await super().edit(message_id, text, controls=controls)
        if text.strip("…"):
            self.words_shown.set()


def feedback_count(core: Core, platform: str, value: str) -> float:
    found = core.metrics.registry.get_sample_value(
        "tokbot_feedback_total", {"platform": platform, "value": value}
    )
    return found or 0.0


async def answer_turn(core: Core) -> Turn:
    """The newest answer stored in KEY."""
    return [t for t in await core.store.history(KEY) if t.role is TurnRole.ASSISTANT][-1]


async def test_an_answer_carries_stop_while_streaming_then_feedback_buttons(
    core: Core, replier: RecordingReplier
) -> None:
    await core.handle(message("ask", "hello"), replier)
    turn = await answer_turn(core)
    [message_id] = replier.order
    assert replier.controls[message_id] == AnswerControls(turn.id, ALICE.id, streaming=False)
    # (The streaming controls are checked in test_streaming; nothing is left running.)
    assert core.answers.get(turn.id) is None


async def test_feedback_is_stored_replaced_and_counted(
    core: Core, replier: RecordingReplier
) -> None:
    await core.handle(message("ask", "hello"), replier)
    turn = await answer_turn(core)

    thanks = await core.record_feedback("test", turn.id, ALICE, POSITIVE)
    assert thanks.startswith("👍") and FEEDBACK_CHANGED not in thanks
    again = await core.record_feedback("test", turn.id, ALICE, POSITIVE)  # same click: no change
    assert FEEDBACK_CHANGED not in again
    changed = await core.record_feedback("test", turn.id, ALICE, NEGATIVE)
    assert changed.startswith("👎") and changed.endswith(FEEDBACK_CHANGED)
    await core.record_feedback("test", turn.id, BOB, POSITIVE)

    [channel] = await core.store.feedback_by_channel(platform="test")
    assert (channel.channel, channel.answers, channel.positive, channel.negative) == (
        KEY.channel,
        1,
        1,  # Bob's; Alice's 👍 was replaced by her 👎
        1,
    )
    assert feedback_count(core, "test", "positive") == 2  # Alice's first, and Bob's
    assert feedback_count(core, "test", "negative") == 1
    # A question is no answer, and an unknown id is no answer either.
    assert await core.record_feedback("test", turn.id - 1, ALICE, POSITIVE) == ANSWER_GONE
    assert await core.record_feedback("test", turn.id + 99, ALICE, POSITIVE) == ANSWER_GONE


async def test_usage_shows_answers_and_feedback_per_channel_to_admins_only(
    core: Core, replier: RecordingReplier
) -> None:
    other = KEY.__class__(KEY.platform, KEY.workspace, "c2")
    elsewhere = KEY.__class__(KEY.platform, "w2", "c9")  # another workspace: not listed
    for key in (KEY, KEY, other, elsewhere):
        await core.handle(message("ask", "hi", key=key), replier)
    turn = await answer_turn(core)
    await core.record_feedback("test", turn.id, ALICE, NEGATIVE)

    await core.handle(message("usage"), replier)
    assert "by channel" not in replier.last
    await core.handle(message("usage", author=ADMIN), replier)
    lines = replier.last.splitlines()
    at = lines.index("Answers and feedback by channel (admins see this):")
    assert lines[at + 1 :] == [
        "• `c1` (here): 2 answers, 👍 0, 👎 1",
        "• `c2`: 1 answers, 👍 0, 👎 0",
    ]


async def test_the_asker_stops_an_answer_mid_stream(core: Core, fake: FakeTokModel) -> None:
    fake.set_reply("word " * 400)
    fake.chunk_delay = 0.02  # about 8 s in all: it is stopped long before
    replier = ShowingReplier()
    answering = asyncio.create_task(core.handle(message("ask", "talk a lot"), replier))
    await asyncio.wait_for(replier.words_shown.wait(), 10)
    turn = await answer_turn(core)
    assert turn.status is TurnStatus.PENDING
    [message_id] = replier.order
    assert replier.controls[message_id] == AnswerControls(turn.id, ALICE.id, streaming=True)

    assert await core.stop_answer(turn.id, BOB) == NOT_YOUR_ANSWER
    assert not answering.done()
    assert await core.stop_answer(turn.id, ALICE) == STOPPED
    await asyncio.wait_for(answering, 5)

    stopped = await answer_turn(core)
    assert stopped.status is TurnStatus.STOPPED
    shown = replier.messages[message_id]
    assert shown.endswith(STOPPED_MARK)
    assert stopped.content == shown.removesuffix(STOPPED_MARK)
    assert 0 < len(stopped.content) < len("word " * 400) - 50
    # A stopped answer can still be rated; its usage (estimated) is counted.
    assert replier.controls[message_id] == AnswerControls(turn.id, ALICE.id, streaming=False)
    summary = await core.store.usage_summary(KEY, ALICE.id)
    assert summary.user_requests == 1 and summary.user_tokens > 0
    assert await core.stop_answer(turn.id, ALICE) == STOPPED  # a second click: still stopped
    fake.chunk_delay = 0
    # The next question sees what was shown, marked as stopped.
    await core.handle(message("ask", "and then?"), replier)
    request = fake.requests[-1].json
    assert request is not None
    sent = request["messages"]
    assert sent[-2]["content"].endswith("[the asker stopped this answer here]")


async def test_a_stop_through_the_database_reaches_the_streaming_process(
    core: Core, fake: FakeTokModel
) -> None:
    """What another replica's Stop does: it marks the turn; this one notices as it saves."""
    fake.set_reply("word " * 400)
    fake.chunk_delay = 0.02
    replier = ShowingReplier()
    answering = asyncio.create_task(core.handle(message("ask", "talk a lot"), replier))
    await asyncio.wait_for(replier.words_shown.wait(), 10)
    turn = await answer_turn(core)
    assert await core.store.request_stop(turn.id)
    await asyncio.wait_for(answering, 5)  # noticed within the save interval (1 s)
    stopped = await answer_turn(core)
    assert stopped.status is TurnStatus.STOPPED
    assert replier.last.endswith(STOPPED_MARK)


async def test_stopping_an_answer_this_process_is_not_streaming(core: Core) -> None:
    user_turn, pending = await core.store.add_exchange(
        KEY, prompt="q", author=ALICE, platform_message_id=None, model="m"
    )
    assert await core.stop_answer(pending, BOB) == NOT_YOUR_ANSWER
    assert await core.stop_answer(pending, ALICE) == STOPPING  # the replica streaming it stops
    assert (await answer_turn(core)).status is TurnStatus.STOPPED
    assert not await core.store.save_shown(pending, "more")  # what that replica is told
    assert await core.stop_answer(user_turn, ALICE) == ANSWER_GONE
    await core.store.update_turn(pending, status=TurnStatus.OK)
    assert await core.stop_answer(pending, ALICE) == ALREADY_FINISHED


def test_a_stopped_answer_stays_in_the_context_marked() -> None:
    turns = [
        Turn(1, TurnRole.USER, TurnKind.TEXT, "q", "u", "Alice", TurnStatus.OK, 0),
        Turn(2, TurnRole.ASSISTANT, TurnKind.TEXT, "half", "b", "bot", TurnStatus.STOPPED, 0),
        Turn(3, TurnRole.USER, TurnKind.TEXT, "next", "u", "Alice", TurnStatus.OK, 0),
    ]
    sent = build_context(None, turns, budget_tokens=1000)
    assert sent[2].content == "half [the asker stopped this answer here]"

"""Two `tokbot run` processes (forked, see harness) on one database (PostgreSQL in CI, SQLite
too): an event delivered to both is answered once, the per-user limit holds across them, and a
replica starting up leaves the other's live answer alone."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from adapters.slack.fake import FakeSlack
from bot.domain import ConversationKey, TurnRole, TurnStatus
from bot.store import Store
from bot.tokmodel.fake import FakeTokModel
from tests.reliability.conftest import Figures
from tests.reliability.harness import ForkedTokbot, bot_env, free_port

CHANNEL = "C0GENERAL"
EVENTS = 10
LIMIT = 3


async def test_two_replicas_one_reply_per_event_and_shared_limits(
    slack: FakeSlack,
    fake: FakeTokModel,
    database_url: str,
    tmp_path: Path,
    reliability: Figures,
) -> None:
    settings = {"TOKBOT_RATE_LIMIT_PER_MINUTE": str(LIMIT), "TOKBOT_STALE_ANSWER_SECONDS": "30"}
    first = ForkedTokbot(
        bot_env(slack, fake, database_url, tmp_path, free_port(), **settings),
        tmp_path / "a.log",
    )
    first.start()
    await first.wait_healthy()
    # A slow answer streams on the first replica while the second starts (and runs its start-up
    # recovery): it must not be marked interrupted.
    fake.chunk_delay = 0.05
    fake.set_reply("slowly " * 300)
    live = slack.message_event("a long one", mention=True, user="U0BOB")
    await slack.post_event(first.events_url, slack.event_body(live))
    second = ForkedTokbot(
        bot_env(slack, fake, database_url, tmp_path, free_port(), **settings),
        tmp_path / "b.log",
    )
    try:
        second.start()
        await second.wait_healthy()
        during = await answer_statuses(database_url, slack, str(live["ts"]))
        fake.chunk_delay = 0.0
        await slack.wait_for(lambda: any(t.strip().endswith("slowly") for t in slack.texts()))
        fake.chunk_delay = 0.0
        fake.set_reply(None)

        # The same event to both replicas at once (as a Slack retry reaching another replica).
        bodies = []
        for n in range(EVENTS):
            user = f"U0USER{n}"
            slack.add_user(user, f"user{n}")
            body = slack.event_body(slack.message_event(f"event {n}", mention=True, user=user))
            bodies.append(body)
            statuses = await asyncio.gather(
                slack.post_event(first.events_url, body),
                slack.post_event(second.events_url, body, retry_num=1),
            )
            assert [s for s, _ in statuses] == [200, 200]
        threads = [str(b["event"]["ts"]) for b in bodies]  # type: ignore[index]
        await slack.wait_for(lambda: all(slack.texts(CHANNEL, thread_ts=ts) for ts in threads))
        await asyncio.sleep(0.5)  # time for a second (wrong) answer to show
        replies = [len(slack.texts(CHANNEL, thread_ts=ts)) for ts in threads]

        # One user, 2 x LIMIT questions alternating between the replicas: LIMIT are answered.
        # Answers are public; refusals private (only the asker sees them).
        def seen() -> list[str]:
            return slack.texts(CHANNEL) + slack.private_texts("U0ALICE")

        before = len(seen())
        for n in range(2 * LIMIT):
            target = first if n % 2 == 0 else second
            payload = slack.command_payload("/ask", f"limited {n}", user_id="U0ALICE")
            status, _ = await slack.post_command(target.events_url, payload)
            assert status == 200
            await slack.wait_for(lambda n=n: len(seen()) >= before + n + 1)

        def outcomes() -> tuple[int, int]:
            answers = seen()[before:]
            answered = sum("You said" in t for t in answers)
            return answered, sum("sending requests quickly" in t for t in answers)

        # Every request ends answered or refused; count once all have (a request that waited
        # its turn shows a public notice first, so the message count runs ahead of them).
        with contextlib.suppress(TimeoutError):
            await slack.wait_for(lambda: sum(outcomes()) >= 2 * LIMIT)
        await asyncio.sleep(0.3)  # time for a wrong extra answer to show
        answered, refused = outcomes()
    finally:
        codes = await asyncio.gather(first.stop(), second.stop())
    assert codes == [0, 0], first.logs() + second.logs()

    statuses = await answer_statuses(database_url, slack, str(live["ts"]))
    reliability.record(
        "replicas",
        f"2 `tokbot run` processes, each of {EVENTS} Slack events delivered to both at once",
        f"{sum(r == 1 for r in replies)}/{EVENTS} events answered exactly once",
        events=EVENTS,
        answered_once=sum(r == 1 for r in replies),
        duplicates=sum(max(0, r - 1) for r in replies),
    )
    reliability.record(
        "replicas",
        f"per-user limit {LIMIT}/minute, {2 * LIMIT} requests alternating between 2 replicas",
        f"{answered} answered, {refused} refused",
        limit=LIMIT,
        answered=answered,
        refused=refused,
    )
    reliability.record(
        "replicas",
        "a replica starts while the other streams an answer",
        f"the live answer stayed {during[0].value} during the start-up, ended {statuses[0].value}",
        during_startup=during[0].value,
        ended=statuses[0].value,
    )
    assert replies == [1] * EVENTS
    assert (answered, refused) == (LIMIT, LIMIT)
    assert (during, statuses) == ([TurnStatus.PENDING], [TurnStatus.OK])
    logs = first.logs() + second.logs()
    assert "Traceback" not in logs


async def answer_statuses(database_url: str, slack: FakeSlack, thread: str) -> list[TurnStatus]:
    store = await Store.open(database_url)
    try:
        key = ConversationKey("slack", slack.team_id, CHANNEL, thread)
        return [t.status for t in await store.history(key) if t.role is TurnRole.ASSISTANT]
    finally:
        await store.close()


FOLLOW_UPS = 16


async def test_two_replicas_answer_a_thread_in_order(
    slack: FakeSlack,
    fake: FakeTokModel,
    database_url: str,
    tmp_path: Path,
    reliability: Figures,
) -> None:
    """Mentions sent one after another into one thread, each delivered to both replicas at
    once: answered in order, each follow-up asked with the answer before it."""
    settings = {"TOKBOT_STALE_ANSWER_SECONDS": "30"}
    replicas = [
        ForkedTokbot(
            bot_env(slack, fake, database_url, tmp_path, free_port(), **settings),
            tmp_path / f"{name}.log",
        )
        for name in "ab"
    ]
    fake.chunk_delay = 0.005  # each answer streams for a while: the next mention comes meanwhile
    fake.chunk_chars = 8
    try:
        for replica in replicas:
            replica.start()
        await asyncio.gather(*(replica.wait_healthy() for replica in replicas))
        first = slack.message_event("question 0", mention=True)
        thread = str(first["ts"])
        for n in range(FOLLOW_UPS + 1):
            event = (
                first
                if n == 0
                else slack.message_event(f"question {n}", mention=True, thread_ts=thread)
            )
            body = slack.event_body(event)
            statuses = await asyncio.gather(
                *(slack.post_event(r.events_url, body, retry_num=i) for i, r in enumerate(replicas))
            )
            assert [s for s, _ in statuses] == [200, 200]

        def all_answered() -> bool:
            texts = slack.texts(CHANNEL, thread_ts=thread)
            return len(texts) > FOLLOW_UPS and said(FOLLOW_UPS) in texts[-1]

        try:
            await slack.wait_for(all_answered, timeout=60)
        except TimeoutError:
            raise AssertionError([t[:50] for t in slack.texts(CHANNEL, thread_ts=thread)]) from None
    finally:
        codes = await asyncio.gather(*(replica.stop() for replica in replicas))
    assert codes == [0, 0], replicas[0].logs() + replicas[1].logs()
    texts = slack.texts(CHANNEL, thread_ts=thread)
    order = [n for text in texts for n in range(FOLLOW_UPS + 1) if said(n) in text]
    asked = [r.json or {} for r in fake.requests if r.path.endswith("/chat/completions")]
    saw_previous = sum(
        any(m.get("role") == "assistant" and said(n - 1) in str(m.get("content"))
            for m in body.get("messages", []))
        for n, body in enumerate(asked)
        if n > 0
    )  # fmt: skip
    in_order = order == list(range(FOLLOW_UPS + 1))
    reliability.record(
        "replicas",
        f"{FOLLOW_UPS + 1} mentions one after another into one thread, each delivered to both "
        "of 2 replicas at once, while the answers before them stream",
        f"{'answered in order' if in_order else 'OUT OF ORDER'}; {saw_previous}/{FOLLOW_UPS} "
        "follow-ups sent to TokModel with the answer before them",
        follow_ups=FOLLOW_UPS,
        in_order=in_order,
        saw_previous=saw_previous,
        replies=len(texts),
    )
    assert in_order, [t[:45] for t in texts]
    assert saw_previous == FOLLOW_UPS and len(asked) == FOLLOW_UPS + 1


def said(n: int) -> str:
    """How the stand-in's answer to "question n" begins."""
    return f"You said: «Alice: question {n}»"

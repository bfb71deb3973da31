"""Two `tokbot run` processes (forked, see harness) on one database (PostgreSQL in CI, SQLite
too): an event delivered to both is answered once, the per-user limit holds across them, and a
replica starting up leaves the other's live answer alone."""

from __future__ import annotations

import asyncio
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
        await asyncio.sleep(0.3)
        answers = seen()[before:]
        answered = sum("You said" in t for t in answers)
        refused = sum("sending requests quickly" in t for t in answers)
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

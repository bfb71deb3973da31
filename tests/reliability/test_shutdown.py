"""SIGTERM while an answer streams: `tokbot run` (forked, see harness) finishes it (or marks it),
closes its sessions and database, and exits 0 within a bound; requests arriving meanwhile get a
503 for Slack to retry elsewhere."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from adapters.slack.fake import FakeSlack
from bot.domain import ConversationKey, TurnRole, TurnStatus
from bot.store import Store
from bot.tokmodel.fake import FakeTokModel
from tests.reliability.conftest import Figures
from tests.reliability.harness import ForkedTokbot, bot_env, free_port

CHANNEL = "C0GENERAL"
BOUND = 15.0  # seconds: the drain (TOKBOT_DRAIN_SECONDS, 7 s) plus closing


async def test_sigterm_finishes_the_answer_in_flight_and_exits_0(
    slack: FakeSlack,
    fake: FakeTokModel,
    database_url: str,
    tmp_path: Path,
    reliability: Figures,
) -> None:
    bot = ForkedTokbot(
        bot_env(slack, fake, database_url, tmp_path, free_port()), tmp_path / "run.log"
    )
    bot.start()
    await bot.wait_healthy()
    fake.chunk_delay = 0.03
    fake.set_reply("steady " * 80)  # ~1.2 s of streaming
    event = slack.message_event("take your time", mention=True)
    await slack.post_event(bot.events_url, slack.event_body(event))
    ts = str(event["ts"])
    await slack.wait_for(lambda: bool(slack.texts(CHANNEL, thread_ts=ts)))
    stopping = time.monotonic()
    bot.send(signal.SIGTERM)
    await asyncio.sleep(0.1)
    late = slack.event_body(slack.message_event("too late", mention=True))
    late_status, _ = await slack.post_event(bot.events_url, late)
    code = await bot.wait_exit(BOUND)
    took = time.monotonic() - stopping
    store = await Store.open(database_url)
    try:
        key = ConversationKey("slack", slack.team_id, CHANNEL, ts)
        answers = [t for t in await store.history(key) if t.role is TurnRole.ASSISTANT]
    finally:
        await store.close()
    logs = bot.logs()
    [shown] = slack.texts(CHANNEL, thread_ts=ts)
    reliability.record(
        "shutdown",
        "SIGTERM while an answer streams; a request arrives during shutdown",
        f"exit {code} after {took:.1f} s (bound {BOUND:.0f} s); the answer ended "
        f"{answers[0].status.value if answers else 'missing'}; the late request got "
        f"{late_status}",
        exit_code=code,
        seconds=round(took, 1),
        answer=answers[0].status.value if answers else None,
        late_status=late_status,
    )
    assert code == 0 and took < BOUND
    assert [a.status for a in answers] == [TurnStatus.OK]
    assert shown.strip() == ("steady " * 80).strip()
    assert late_status in (200, 503)  # 503 once draining; 200 only if it came first
    assert "Traceback" not in logs and "Unclosed" not in logs

"""SIGKILL in the middle of a streamed answer, 20 times, restarting tokbot each time: the database
opens cleanly, every acknowledged user turn is kept, no reply is sent twice (Slack's redelivery
of the killed event is not answered again), and every cut-off answer is marked interrupted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from adapters.discord.fake import FakeDiscord
from adapters.slack.fake import FakeSlack
from bot.domain import ConversationKey, TurnRole, TurnStatus
from bot.store import Store
from bot.tokmodel.fake import FakeTokModel
from tests.conftest import API_KEY
from tests.reliability.conftest import Figures
from tests.reliability.harness import ForkedTokbot, bot_env, discord_env, free_port

KILLS = 20
CHANNEL = "C0GENERAL"
#: Seconds after the placeholder shows: before any text, and after the first edit (1 s).
KILL_DELAYS = (0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 1.1)
LONG_ANSWER = "streaming " * 400  # ~200 pieces, 10 s at 0.05 s a piece: always cut off


async def test_sigkill_mid_stream_twenty_times(
    slack: FakeSlack,
    fake: FakeTokModel,
    database_url: str,
    tmp_path: Path,
    reliability: Figures,
) -> None:
    fake.chunk_delay = 0.05
    fake.set_reply(LONG_ANSWER)
    env = bot_env(slack, fake, database_url, tmp_path, free_port())
    events: list[dict[str, object]] = []
    bot = ForkedTokbot(env, tmp_path / "run-0.log").start()
    for attempt in range(KILLS):
        await bot.wait_healthy()
        if events:  # Slack redelivers the event the crash left unanswered
            previous = events[-1]
            status, _ = await slack.post_event(bot.events_url, previous, retry_num=1)
            assert status == 200
        event = slack.message_event(f"question {attempt}", mention=True)
        body = slack.event_body(event)
        events.append(body)
        status, _ = await slack.post_event(bot.events_url, body)
        assert status == 200  # acknowledged: from here on the turn must not be lost
        ts = str(event["ts"])
        await slack.wait_for(lambda ts=ts: bool(slack.texts(CHANNEL, thread_ts=ts)))
        await asyncio.sleep(KILL_DELAYS[attempt % len(KILL_DELAYS)])
        await bot.kill()
        bot = ForkedTokbot(env, tmp_path / f"run-{attempt + 1}.log").start()
    await bot.wait_healthy()
    status, _ = await slack.post_event(bot.events_url, events[-1], retry_num=1)
    assert status == 200
    fake.set_reply("all good")
    fake.chunk_delay = 0.0
    final = slack.message_event("still alive?", mention=True)
    await slack.post_event(bot.events_url, slack.event_body(final))
    await slack.wait_for(
        lambda: any("all good" in t for t in slack.texts(CHANNEL, thread_ts=str(final["ts"])))
    )
    await asyncio.sleep(0.3)  # time for a (wrong) second answer to a redelivered event
    assert await bot.stop() == 0

    store = await Store.open(database_url)
    try:
        lost = duplicates = interrupted = with_text = 0
        for attempt, body in enumerate(events):
            ts = str(body["event"]["ts"])  # type: ignore[index]
            key = ConversationKey("slack", slack.team_id, CHANNEL, ts)
            turns = await store.history(key)
            users = [t for t in turns if t.role is TurnRole.USER]
            answers = [t for t in turns if t.role is TurnRole.ASSISTANT]
            if [t.content for t in users] != [f"question {attempt}"]:
                lost += 1
            duplicates += max(0, len(slack.texts(CHANNEL, thread_ts=ts)) - 1)
            duplicates += max(0, len(answers) - 1)
            if [t.status for t in answers] == [TurnStatus.INTERRUPTED]:
                interrupted += 1
                with_text += bool(answers[0].content.strip())
    finally:
        await store.close()
    logs = "".join(
        (tmp_path / f"run-{n}.log").read_text(errors="replace") for n in range(KILLS + 1)
    )
    leaked = sum(secret in logs for secret in (API_KEY, slack.bot_token, slack.signing_secret))
    reliability.record(
        "crash",
        f"SIGKILL mid-stream, {KILLS} times, restart each time (Slack event redelivered)",
        f"{KILLS}/{KILLS} restarts clean; {lost} lost turns; {duplicates} duplicate replies; "
        f"{interrupted}/{KILLS} answers marked interrupted ({with_text} keep partial text)",
        kills=KILLS,
        clean_restarts=KILLS,
        lost_turns=lost,
        duplicates=duplicates,
        interrupted=interrupted,
        partial_text_saved=with_text,
        secrets_in_logs=leaked,
    )
    assert (lost, duplicates, interrupted) == (0, 0, KILLS)
    assert leaked == 0 and "Traceback" not in logs


MENTIONS = 4


async def test_sigkill_right_after_the_ack_loses_nothing(
    slack: FakeSlack,
    fake: FakeTokModel,
    database_url: str,
    tmp_path: Path,
    reliability: Figures,
) -> None:
    """Mentions into one thread, each acknowledged, then SIGKILL at once: the restarted process
    answers every one exactly once, in order, each seeing the answer before it."""
    env = bot_env(
        slack, fake, database_url, tmp_path, free_port(), TOKBOT_PROCESS_LEASE_SECONDS="1"
    )
    bot = ForkedTokbot(env, tmp_path / "ack-0.log").start()
    await bot.wait_healthy()
    # Slack's users.info is slow: the process acknowledges the mentions and gets no further.
    slack.delay("users.info", 30)
    first = slack.message_event("question 0", mention=True)
    thread = str(first["ts"])
    events = [first] + [
        slack.message_event(f"question {n}", mention=True, thread_ts=thread)
        for n in range(1, MENTIONS)
    ]
    bodies = [slack.event_body(event) for event in events]
    for body in bodies:
        status, _ = await slack.post_event(bot.events_url, body)
        assert status == 200
    await bot.kill()  # the instant the last one was acknowledged
    slack.delay("users.info", 0)
    shown_before_restart = len(slack.texts(CHANNEL, thread_ts=thread))

    bot = ForkedTokbot(env, tmp_path / "ack-1.log").start()
    await bot.wait_healthy()
    # (Slack does not redeliver acknowledged events: only the database has them now.)
    # One more mention: answered in order after the recovered ones, so once it shows, any
    # (wrong) second answer to them would have shown too.
    last = slack.message_event(f"question {MENTIONS}", mention=True, thread_ts=thread)
    await slack.post_event(bot.events_url, slack.event_body(last))

    def settled() -> bool:
        texts = slack.texts(CHANNEL, thread_ts=thread)
        return bool(texts) and f"question {MENTIONS}" in texts[-1] and "thinking" not in texts[-1]

    await slack.wait_for(settled, timeout=30)
    assert await bot.stop() == 0
    texts = slack.texts(CHANNEL, thread_ts=thread)
    answered = [n for n in range(MENTIONS) if sum(said(n) in t for t in texts) == 1]
    in_order = [n for t in texts for n in range(MENTIONS + 1) if said(n) in t] == list(
        range(MENTIONS + 1)
    )
    asked = [r.json for r in fake.requests if r.path.endswith("/chat/completions")]
    saw_previous = sum(
        any(said(n - 1) in str(m.get("content")) and m.get("role") == "assistant"
            for m in body["messages"])
        for n, body in enumerate(asked)
        if n > 0
    )  # fmt: skip
    reliability.record(
        "crash",
        f"{MENTIONS} mentions into one thread, SIGKILL the instant the last is acknowledged "
        "(before any is answered), restart; no redelivery (Slack does not resend acked events)",
        f"{len(answered)}/{MENTIONS} answered exactly once after the restart "
        f"({shown_before_restart} before it); {'in order' if in_order else 'OUT OF ORDER'}; "
        f"{saw_previous}/{len(asked) - 1} follow-ups saw the answer before them",
        mentions=MENTIONS,
        answered_once=len(answered),
        in_order=in_order,
        saw_previous=saw_previous,
        replies=len(texts),
    )
    assert shown_before_restart == 0
    assert answered == list(range(MENTIONS)) and len(texts) == MENTIONS + 1
    assert in_order and saw_previous == MENTIONS


def said(n: int) -> str:
    """How the stand-in's answer to "question n" begins."""
    return f"You said: «Alice: question {n}»"


async def test_discord_sigkill_after_the_deferral_loses_nothing(
    discord_fake: FakeDiscord,
    fake: FakeTokModel,
    database_url: str,
    tmp_path: Path,
    reliability: Figures,
) -> None:
    """A slash command deferred and a mention received, then SIGKILL before either is answered:
    after the restart, the command is answered in its channel after a line naming who asked
    (its interaction token is not kept), the mention gets its reply; each once."""
    env = discord_env(
        discord_fake, fake, database_url, tmp_path, free_port(), TOKBOT_PROCESS_LEASE_SECONDS="1"
    )
    bot = ForkedTokbot(env, tmp_path / "discord-0.log").start()
    await bot.wait_healthy()
    fake.latency = 30  # TokModel is slow: the process acknowledges and shows nothing yet
    asked = await discord_fake.interaction("ask", {"question": "question 0"})
    mention = await discord_fake.message("question 1", dm=True)
    await wait_until(lambda: len(chat_requests(fake)) == 2)  # both accepted, both being asked
    assert discord_fake.interaction_responses.get(asked["id"])  # deferred
    await bot.kill()
    fake.latency = 0.0
    shown_before = [m.content for m in discord_fake.messages.values() if m.content]

    bot = ForkedTokbot(env, tmp_path / "discord-1.log").start()
    await bot.wait_healthy()
    in_channel = discord_fake.in_channel
    dm = mention["channel_id"]

    def answered() -> bool:
        return any("said: «alice: question 0»" in m.content for m in in_channel()) and any(
            "said: «alice: question 1»" in m.content for m in in_channel(dm)
        )

    await discord_fake.wait_for(answered, timeout=20)
    # One more message in each conversation: answered after the recovered ones, so a (wrong)
    # second answer to them would have shown by then.
    later = await discord_fake.message("question 2", dm=True)
    await discord_fake.wait_for(
        lambda: any("said: «alice: question 2»" in m.content for m in in_channel(dm))
    )
    assert await bot.stop() == 0
    channel_texts = [m.content for m in in_channel()]
    dm_messages = in_channel(dm)
    command_once = sum("said: «alice: question 0»" in t for t in channel_texts) == 1
    named = any("I restarted before answering your `/ask`" in t for t in channel_texts)
    mention_once = sum("said: «alice: question 1»" in m.content for m in dm_messages) == 1
    replied = [m.reply_to for m in dm_messages if "said: «alice: question 1»" in m.content] == [
        mention["id"]
    ]
    reliability.record(
        "crash",
        "Discord: a deferred /ask and a DM, SIGKILL before either is answered, restart",
        f"/ask answered {'once' if command_once else 'NOT once'} in its channel "
        f"({'after a line naming who asked' if named else 'unnamed'}); the DM answered "
        f"{'once, as a reply' if mention_once and replied else 'NOT once'}",
        command_once=command_once,
        mention_once=mention_once,
        shown_before=len(shown_before),
    )
    assert shown_before == []
    assert command_once and named and mention_once and replied
    assert [m.reply_to for m in dm_messages] == [mention["id"], later["id"]]


def chat_requests(fake: FakeTokModel) -> list[object]:
    return [r for r in fake.requests if r.path.endswith("/chat/completions")]


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` (for state the fakes have no event for) until it holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)

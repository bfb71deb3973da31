"""Start-up, sharding, TokModel failures and a gateway disconnect with a request in flight."""

from __future__ import annotations

import pytest

from adapters.discord import DiscordAdapter
from adapters.discord.fake import FakeDiscord
from bot.settings import SettingsError
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.discord.conftest import Start
from tests.discord.helpers import CHAT, answer, text_of


async def test_a_wrong_token_is_a_clear_start_up_error(
    start_adapter: Start, discord_fake: FakeDiscord
) -> None:
    with pytest.raises(SettingsError, match="DISCORD_TOKEN was rejected"):
        await start_adapter(DISCORD_TOKEN="not-the-token")


async def test_a_missing_message_content_intent_is_a_clear_start_up_error(
    start_adapter: Start, discord_fake: FakeDiscord
) -> None:
    discord_fake.grant_message_content = False
    with pytest.raises(SettingsError, match="MESSAGE CONTENT INTENT"):
        await start_adapter()
    assert len(discord_fake.identified) == 1  # refused once, no reconnect loop


async def test_all_shards_connect_when_discord_recommends_several(
    start_adapter: Start, discord_fake: FakeDiscord
) -> None:
    discord_fake.shards = 2
    adapter = await start_adapter()
    assert sorted(i["shard"] for i in discord_fake.identified) == [[0, 2], [1, 2]]
    assert await adapter.healthy()
    inter = await discord_fake.interaction("ask", {"question": "sharded?"})
    await answer(discord_fake, inter, "sharded?")


async def test_processes_can_split_the_shards(
    start_adapter: Start, discord_fake: FakeDiscord
) -> None:
    await start_adapter(DISCORD_SHARD_COUNT="3", DISCORD_SHARD_IDS="1,2")
    assert sorted(i["shard"] for i in discord_fake.identified) == [[1, 3], [2, 3]]
    assert not any(c.path == "/gateway/bot" for c in discord_fake.calls)


FAILURES = [
    (Fault(status=401), "TOKMODEL_API_KEY"),
    (Fault(status=403), "out of credits"),
    (Fault(status=429, retry_after=7, times=-1), "try again in about 7 seconds"),
    (Fault(status=500, times=-1), "TokModel failed (error 500)"),
    (Fault(delay=5), "took too long"),
    (Fault(cut_after=3), "broke off half-way"),
]


@pytest.mark.parametrize(("fault", "expected"), FAILURES, ids=lambda v: str(v)[:20])
async def test_tokmodel_failures_become_friendly_replies(
    adapter: DiscordAdapter,
    discord_fake: FakeDiscord,
    fake: FakeTokModel,
    fault: Fault,
    expected: str,
) -> None:
    fake.fail(Fault(**{**fault.__dict__, "path": CHAT}))
    inter = await discord_fake.interaction("ask", {"question": "hello?"})
    messages = await answer(discord_fake, inter, expected)
    assert "Traceback" not in text_of(messages)


async def test_a_failed_mention_answer_is_friendly_too(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    fake.fail(Fault(status=429, retry_after=3, times=-1, path=CHAT))
    msg = await discord_fake.message("<@900000000000000001> hi", mention_bot=True)
    await discord_fake.wait_for(
        lambda: any(
            "try again in about 3 seconds" in m.content for m in discord_fake.messages.values()
        )
    )
    del msg


async def test_a_gateway_drop_resumes_without_losing_work(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    fake.chunk_delay = 0.02
    fake.set_reply("slow " * 60)
    in_flight = await discord_fake.interaction("ask", {"question": "take your time"})
    await discord_fake.wait_for(lambda: any(r.path == CHAT for r in fake.requests))
    await discord_fake.drop_connections()
    missed = await discord_fake.interaction("help")  # sent while the bot is disconnected
    await discord_fake.wait_for(lambda: bool(discord_fake.resumed), timeout=15)
    await answer(discord_fake, missed, "/imagine")
    await discord_fake.wait_for(
        lambda: text_of(discord_fake.replies_to(in_flight)).strip() == ("slow " * 60).strip()
    )
    assert len(discord_fake.identified) == 1  # resumed, not re-identified
    assert await adapter.healthy()


async def test_stop_cancels_answers_in_flight(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    fake.chunk_delay = 0.2
    asked = await discord_fake.interaction("ask", {"question": "long one"})
    await discord_fake.wait_for(lambda: any(m.content for m in discord_fake.replies_to(asked)))
    await adapter.stop()
    assert not await adapter.healthy()
    # What people saw stays, marked as cut off (the edit goes out before the client closes).
    (shown,) = [m for m in discord_fake.replies_to(asked) if m.content]
    assert shown.content.endswith("_(I was interrupted; ask again for the rest.)_")
    assert "_(answer cut off)_" in shown.content

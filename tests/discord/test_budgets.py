"""Budgets and admin alerts on Discord, through the real discord.py and the fake Discord:
`/budget` with a user option, a private refusal that sends nothing to TokModel, alerts by DM
(POST /users/@me/channels, then a message) to the server owner and admins, or to a channel."""

from __future__ import annotations

from adapters.discord import DiscordAdapter
from adapters.discord.fake import MANAGE_GUILD, FakeDiscord
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.discord.conftest import Start
from tests.discord.helpers import CHAT, answer

ALICE = 111
ADA = 222  # has Manage Server
OWNER = "1"  # the fake guild's owner_id


def chats(fake: FakeTokModel) -> int:
    return sum(1 for r in fake.requests if r.path == CHAT)


async def test_a_budget_refuses_privately_and_alerts_owner_and_admins(
    adapter: DiscordAdapter, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    alice = discord_fake.user(ALICE, "alice")
    set_it = {"scope": "user", "limit": "10/day"}
    refused = await discord_fake.interaction("budget", set_it, users={"user": alice})
    assert (await answer(discord_fake, refused, "Only admins"))[0].ephemeral
    done = await discord_fake.interaction(
        "budget", set_it, users={"user": alice}, user_id=ADA, user_name="ada",
        permissions=MANAGE_GUILD,
    )  # fmt: skip
    [said] = await answer(discord_fake, done, f"User {ALICE}'s budget is now 10 tokens a day")
    assert said.ephemeral

    asked = await discord_fake.interaction("ask", {"question": "hello"})
    await answer(discord_fake, asked, "You said")
    # Past 80 %: the owner and Ada (an admin who used the bot) get a DM; Alice does not.
    await discord_fake.wait_for(
        lambda: bool(discord_fake.direct_messages(OWNER) and discord_fake.direct_messages(ADA))
    )
    assert f"user {ALICE}'s daily budget" in discord_fake.direct_messages(OWNER)[0]
    assert str(ALICE) not in discord_fake.dms_opened

    sent = chats(fake)
    again = await discord_fake.interaction("ask", {"question": "and again"})
    [refusal] = await answer(discord_fake, again, "Not sent: this would go past your daily")
    assert refusal.ephemeral and "nothing left" in refusal.content
    assert chats(fake) == sent

    mine = await discord_fake.interaction("budget")
    [shown] = await answer(discord_fake, mine, "• you: 10 tokens a day:")
    assert shown.ephemeral and "this channel: no budget" in shown.content


async def test_a_rejected_key_is_posted_once_in_the_alert_channel(
    start_adapter: Start, discord_fake: FakeDiscord, fake: FakeTokModel
) -> None:
    await start_adapter(TOKBOT_ALERT_CHANNEL=f"slack:C0X,discord:{discord_fake.channel_id}")
    fake.fail(Fault(status=401, times=2, path=CHAT))
    for question in ("one", "two"):
        asked = await discord_fake.interaction("ask", {"question": question})
        await answer(discord_fake, asked, "TOKMODEL_API_KEY")

    def alerts() -> list[str]:
        return [m.content for m in discord_fake.in_channel() if "rejected the API key" in m.content]

    await discord_fake.wait_for(lambda: bool(alerts()))
    assert len(alerts()) == 1 and discord_fake.dms_opened == []

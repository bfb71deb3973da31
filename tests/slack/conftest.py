"""Slack fixtures: a fake Slack on loopback and tokbot's real SlackAdapter + WebServer serving
`/slack/events` on an ephemeral port (or connected over Socket Mode)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.slack import SlackAdapter
from adapters.slack.fake import FakeSlack
from adapters.web import WebServer
from bot.core import Core
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.tokmodel.fake import FakeTokModel
from tests.conftest import API_KEY

ALICE = "U0ALICE"
ADA = "U0ADA"  # a workspace admin
BOB = "U0BOB"  # named in TOKBOT_ADMIN_USER_IDS
CHANNEL = "C0GENERAL"
#: Slack's minute, shortened for tests: chat.update's limit (50 a minute per workspace) holds
#: per TEST_MINUTE seconds in the fake Slack and in the bot's edit budget alike.
TEST_MINUTE = 2.0


@dataclass
class Bot:
    """A running tokbot Slack app and the fake Slack it talks to."""

    slack: FakeSlack
    adapter: SlackAdapter
    core: Core
    web: WebServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web.port}/slack/events"

    async def command(self, command: str, text: str = "", **fields: Any) -> tuple[int, str]:
        return await self.slack.post_command(
            self.url, self.slack.command_payload(command, text, **fields)
        )

    async def event(self, event: dict[str, Any], **kwargs: Any) -> tuple[int, str]:
        return await self.slack.post_event(self.url, self.slack.event_body(event), **kwargs)

    async def replies(self, count: int, channel: str = CHANNEL, **kwargs: Any) -> list[str]:
        """Wait until `count` messages are in `channel` and no answer is still streaming."""
        await self.slack.wait_for(
            lambda: len(self.slack.texts(channel, **kwargs)) >= count and self.adapter.bot.busy == 0
        )
        return self.slack.texts(channel, **kwargs)

    async def private_replies(self, count: int, user: str = ALICE) -> list[str]:
        """Wait until `user` was shown `count` private messages and no work is left."""
        await self.slack.wait_for(
            lambda: len(self.slack.private_texts(user)) >= count and self.adapter.bot.busy == 0
        )
        return self.slack.private_texts(user)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    fake.update_limit = (50, TEST_MINUTE)
    await fake.start()
    fake.add_user(ALICE, "Alice")
    fake.add_user(ADA, "Ada", is_admin=True)
    fake.add_user(BOB, "Bob")
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def slack_settings(
    make_settings: Callable[..., Settings], slack: FakeSlack
) -> Callable[..., Settings]:
    def build(**overrides: str) -> Settings:
        env = {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": slack.signing_secret,
            "SLACK_API_URL": slack.api_url,
            "TOKBOT_ADMIN_USER_IDS": BOB,
        }
        return make_settings(**(env | overrides))

    return build


@asynccontextmanager
async def running(
    settings: Settings,
    slack: FakeSlack,
    fake: FakeTokModel,
    *,
    edit_interval: float = 0.05,
    edit_window: float = TEST_MINUTE,
) -> AsyncIterator[Bot]:
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        web = WebServer("127.0.0.1", 0)
        adapter = SlackAdapter(
            core,
            settings,
            web,
            edit_interval=edit_interval,
            drain_timeout=3,
            edit_window=edit_window,
        )
        web.add_health_check(adapter.name, adapter.healthy)
        web.add_degradation("tokmodel", lambda: core.alerts.problem)  # as `tokbot run` does
        await web.start()
        try:
            await adapter.start()
            yield Bot(slack, adapter, core, web)
        finally:
            await adapter.stop()
            await web.stop()


@pytest.fixture
async def bot(
    slack_settings: Callable[..., Settings], slack: FakeSlack, fake: FakeTokModel
) -> AsyncIterator[Bot]:
    async with running(slack_settings(), slack, fake) as started:
        yield started


@pytest.fixture
async def socket_bot(
    slack_settings: Callable[..., Settings], slack: FakeSlack, fake: FakeTokModel
) -> AsyncIterator[Bot]:
    settings = slack_settings(SLACK_APP_TOKEN=slack.app_token, SLACK_SIGNING_SECRET="")
    async with running(settings, slack, fake) as started:
        yield started

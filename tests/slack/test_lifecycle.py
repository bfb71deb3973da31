"""Start-up fails fast, with the variable to fix, when Slack refuses a token."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from adapters.slack import SlackAdapter
from adapters.slack.fake import FakeSlack
from bot.core import Core
from bot.settings import Settings, SettingsError
from bot.tokmodel.fake import FakeTokModel
from tests.slack.conftest import running


async def test_a_wrong_bot_token_stops_start_up(
    slack_settings: Callable[..., Settings], slack: FakeSlack, fake: FakeTokModel
) -> None:
    with pytest.raises(SettingsError, match="SLACK_BOT_TOKEN"):
        async with running(slack_settings(SLACK_BOT_TOKEN="xoxb-wrong"), slack, fake):
            pass


async def test_a_wrong_app_token_stops_start_up(
    slack_settings: Callable[..., Settings], slack: FakeSlack, fake: FakeTokModel
) -> None:
    settings = slack_settings(SLACK_APP_TOKEN="xapp-wrong")
    with pytest.raises(SettingsError, match="SLACK_APP_TOKEN"):
        async with running(settings, slack, fake):
            pass
    assert slack.calls_to("apps.connections.open")[0].authorized is False


async def test_http_mode_needs_the_signing_secret(
    slack_settings: Callable[..., Settings], core: Core
) -> None:
    with pytest.raises(SettingsError, match="SLACK_SIGNING_SECRET"):
        SlackAdapter(core, slack_settings(SLACK_SIGNING_SECRET=""))

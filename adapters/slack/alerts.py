"""Admin alerts on Slack: a DM (conversations.open, then chat.postMessage) to each user in
TOKBOT_ADMIN_USER_IDS and each workspace admin who has used the bot (seen by any replica), or a
post in the channel(s) TOKBOT_ALERT_CHANNEL names for Slack instead."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import translate
from adapters.slack.errors import describe
from bot.alerts import Alert, Alerts
from bot.settings import Settings

log = logging.getLogger(__name__)


class SlackAlerts:
    """`bot.alerts.AlertSink` for one Slack workspace (one bot token: one team)."""

    platform = translate.PLATFORM

    def __init__(self, client: AsyncWebClient, alerts: Alerts, settings: Settings) -> None:
        self._client = client
        self._alerts = alerts
        self._channels = settings.alert_channels(self.platform)
        # Slack ids are letters and digits (U…, W…); an all-digit id is a Discord snowflake.
        self._admin_ids = sorted(i for i in settings.admin_ids if not i.isdigit())
        #: The workspace's team id, from auth.test at start-up.
        self.team_id = ""

    async def send_alert(self, alert: Alert) -> int:
        if alert.workspace not in (None, self.team_id):
            return 0
        text = translate.to_slack(alert.text)
        if self._channels:
            return sum([await self._post(channel, text) for channel in self._channels])
        seen = await self._alerts.admins_seen(self.platform, self.team_id)
        people = set(self._admin_ids) | seen
        reached = 0
        for user in sorted(people):
            reached += await self._direct_message(user, text)
        return reached

    async def _direct_message(self, user: str, text: str) -> int:
        try:
            opened = await self._client.conversations_open(users=user)
        except SlackApiError as exc:
            log.warning("Slack: could not open a DM with %s (%s)", user, describe(exc))
            return 0
        channel = (opened.get("channel") or {}).get("id")
        return await self._post(str(channel), text) if channel else 0

    async def _post(self, channel: str, text: str) -> int:
        try:
            await self._client.chat_postMessage(channel=channel, text=text)
        except SlackApiError as exc:
            log.warning("Slack: could not post an alert in %s (%s)", channel, describe(exc))
            return 0
        return 1

"""Admin alerts on Discord: a DM (POST /users/@me/channels, then a message in it) to each
server's owner, the users in TOKBOT_ADMIN_USER_IDS and the admins (Manage Server or an admin
role) seen using the bot; or a message in the channel(s) TOKBOT_ALERT_CHANNEL names for Discord.

Members of DISCORD_ADMIN_ROLE_IDS are reached only as far as discord.py has them cached (people
seen talking): listing a role's members needs the privileged Server Members intent, which
tokbot does not ask for."""

from __future__ import annotations

import logging

import discord

from adapters.discord import translate
from bot.alerts import Alert, Alerts
from bot.settings import Settings

log = logging.getLogger(__name__)
NO_MENTIONS = discord.AllowedMentions.none()


class DiscordAlerts:
    """`bot.alerts.AlertSink` for the servers one discord.py client is in."""

    platform = translate.PLATFORM

    def __init__(self, client: discord.Client, alerts: Alerts, settings: Settings) -> None:
        self._client = client
        self._alerts = alerts
        self._channels = [int(c) for c in settings.alert_channels(self.platform) if c.isdigit()]
        # Discord ids are snowflakes (digits); TOKBOT_ADMIN_USER_IDS may hold Slack ids too.
        self._admin_ids = {int(i) for i in settings.admin_ids if i.isdigit()}
        self._admin_roles = translate.admin_role_ids(settings)

    async def send_alert(self, alert: Alert) -> int:
        guilds = [
            g for g in self._client.guilds if alert.workspace in (None, str(g.id))
        ]  # (this process's shards' servers)
        if not guilds:
            return 0
        if self._channels:
            return sum([await self._post(channel, alert.text) for channel in self._channels])
        people = set(self._admin_ids)
        for guild in guilds:
            if guild.owner_id is not None:
                people.add(guild.owner_id)
            for role_id in self._admin_roles:
                role = guild.get_role(role_id)
                people.update(m.id for m in (role.members if role else ()) if not m.bot)
            seen = await self._alerts.admins_seen(self.platform, str(guild.id))
            people.update(int(i) for i in seen if i.isdigit())
        reached = 0
        for user_id in sorted(people):
            reached += await self._direct_message(user_id, alert.text)
        return reached

    async def _direct_message(self, user_id: int, text: str) -> int:
        try:
            channel = await self._client.create_dm(discord.Object(id=user_id))
            await channel.send(text, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("Discord: could not DM an alert to %s (%s)", user_id, exc.status)
            return 0
        return 1

    async def _post(self, channel_id: int, text: str) -> int:
        channel = self._client.get_channel(channel_id)
        try:
            if channel is None:
                channel = await self._client.fetch_channel(channel_id)
            if not isinstance(channel, discord.abc.Messageable):
                log.warning("Discord: TOKBOT_ALERT_CHANNEL %s is not a text channel", channel_id)
                return 0
            await channel.send(text, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("Discord: could not post an alert in %s (%s)", channel_id, exc.status)
            return 0
        return 1

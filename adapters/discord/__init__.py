"""The Discord adapter: slash commands, mentions, replies, DMs and voice messages, answered by the
core through discord.py 2 (sharded; pointed at any Discord-compatible server by settings)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord
import yarl
from discord.gateway import DiscordWebSocket

from adapters.discord.alerts import DiscordAlerts
from adapters.discord.client import TokbotClient
from adapters.web import WebServer
from bot.core import Core
from bot.settings import Settings, SettingsError

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
INTENT_HELP = (
    "Discord refused the message content intent (close code 4014): open the Developer Portal → "
    "your application → Bot → Privileged Gateway Intents, turn on MESSAGE CONTENT INTENT, "
    "save, and restart tokbot (see docs/discord.md)"
)


def api_base(value: str) -> str:
    """DISCORD_API_BASE as discord.py's Route.BASE: `https://host` gains `/api/v10`."""
    base = value.rstrip("/")
    return base if "/api/v" in base else base + "/api/v10"


def point_at(settings: Settings) -> None:
    """Send discord.py's REST calls and gateway connections to DISCORD_API_BASE and
    DISCORD_GATEWAY_URL. Both live on discord.py classes, so they hold for the whole process."""
    if settings.discord_api_base:
        discord.http.Route.BASE = api_base(settings.discord_api_base)
    if settings.discord_gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def _log_end(runner: asyncio.Task[None]) -> None:
    """After start-up, a connection that ends for good is logged (and /healthz turns red)."""
    if not runner.cancelled() and runner.exception() is not None:
        log.error("the Discord connection ended: %s", runner.exception())


class DiscordAdapter:
    """Adapter lifecycle around one sharded discord.py client."""

    name = "discord"

    def __init__(
        self,
        core: Core,
        settings: Settings,
        web: WebServer | None = None,
        *,
        guild_ready_timeout: float = 2.0,
    ) -> None:
        """`web` is unused (Discord needs no inbound HTTP); `guild_ready_timeout` is how long
        discord.py waits for more guilds after READY before it reports ready."""
        if settings.discord_token is None or not settings.discord_token.get_secret_value():
            raise SettingsError("DISCORD_TOKEN is not set")
        if settings.discord_shards is not None and settings.discord_shard_count is None:
            raise SettingsError("DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (the total shards)")
        self._core = core
        self._settings = settings
        self._token = settings.discord_token.get_secret_value()
        self.client: TokbotClient | None = None
        self._runner: asyncio.Task[None] | None = None
        self._guild_ready_timeout = guild_ready_timeout
        self.alerts: DiscordAlerts | None = None

    async def start(self) -> None:
        """Log in, sync the slash commands, connect every shard; return once all are READY."""
        point_at(self._settings)
        client = self.client = TokbotClient(
            self._core, self._settings, guild_ready_timeout=self._guild_ready_timeout
        )
        try:
            await client.login(self._token)
        except discord.LoginFailure:
            await client.close()
            raise SettingsError(
                "DISCORD_TOKEN was rejected by Discord (401): copy the bot token again from the "
                "Developer Portal → your application → Bot → Reset Token"
            ) from None
        except (discord.HTTPException, OSError) as exc:
            await client.close()
            raise SettingsError(f"could not reach Discord's API to log in: {exc}") from None
        self._runner = asyncio.create_task(self._connect(client))
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait(
            {self._runner, ready}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            error = self._runner.exception() if self._runner in done else None
            await self.stop()
            if isinstance(error, SettingsError):
                raise error
            if error is not None:
                raise SettingsError(f"could not connect to the Discord gateway: {error}")
            raise SettingsError(f"Discord did not become ready in {READY_TIMEOUT:.0f} s")
        self._runner.add_done_callback(_log_end)
        self.alerts = DiscordAlerts(client, self._core.alerts, self._settings)
        self._core.alerts.register(self.alerts)
        log.info("Discord: connected as %s on %d shard(s)", client.user, len(client.shards))

    async def _connect(self, client: TokbotClient) -> None:
        try:
            await client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            raise SettingsError(INTENT_HELP) from None
        except discord.ConnectionClosed as exc:
            if exc.code == 4004:
                raise SettingsError("DISCORD_TOKEN was rejected by the gateway (4004)") from None
            log.error("Discord connection closed for good (code %s)", exc.code)
            raise SettingsError(f"the Discord gateway closed the connection ({exc.code})") from None

    async def drain(self, timeout: float) -> None:
        """Let the answers in flight finish for up to `timeout` seconds (events that arrive
        meanwhile are still answered: Discord does not redeliver them), then cancel the rest."""
        if self.client is not None:
            await self.client.drain(timeout)

    async def stop(self) -> None:
        """Cancel answers in flight (their partial text is kept), then disconnect."""
        if self.alerts is not None:
            self._core.alerts.unregister(self.alerts)
        if self.client is not None and not self.client.is_closed():
            await self.client.close()
        if self._runner is not None:
            if not self._runner.done():
                self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
            self._runner = None

    async def healthy(self) -> bool:
        client = self.client
        if client is None or client.is_closed() or not client.is_ready():
            return False
        return all(not shard.is_closed() for shard in client.shards.values())

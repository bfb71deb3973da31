"""Who wrote a message: names and workspace-admin status from `users.info`, cached."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.errors import describe
from bot.domain import Author

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    name: str
    is_admin: bool
    is_bot: bool
    expires: float


class UserDirectory:
    """Looks people up once per `ttl` seconds; a failed lookup gives a plain, non-admin author
    (so a Slack hiccup never grants admin rights, and never stops an answer)."""

    def __init__(self, client: AsyncWebClient, *, ttl: float = 600.0) -> None:
        self._client = client
        self._ttl = ttl
        self._cache: dict[str, _Entry] = {}

    async def author(self, user_id: str, fallback_name: str = "") -> Author:
        entry = self._cache.get(user_id)
        if entry is None or entry.expires < time.monotonic():
            entry = await self._lookup(user_id)
            if entry is None:
                return Author(id=user_id, name=fallback_name or user_id)
            self._cache[user_id] = entry
        return Author(id=user_id, name=entry.name, is_admin=entry.is_admin, is_bot=entry.is_bot)

    async def _lookup(self, user_id: str) -> _Entry | None:
        try:
            response = await self._client.users_info(user=user_id)
        except SlackApiError as exc:
            log.warning("users.info failed for %s: %s", user_id, describe(exc))
            return None
        except Exception:
            log.warning("users.info failed for %s", user_id, exc_info=True)
            return None
        user = response.get("user") or {}
        profile = user.get("profile") or {}
        name = (
            profile.get("display_name")
            or profile.get("real_name")
            or user.get("real_name")
            or user.get("name")
            or user_id
        )
        return _Entry(
            name=str(name),
            is_admin=bool(user.get("is_admin") or user.get("is_owner")),
            is_bot=bool(user.get("is_bot")),
            expires=time.monotonic() + self._ttl,
        )

"""Reading a Slack thread the bot is called into (conversations.replies), so its first answer
there knows what people said before the mention."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.errors import describe
from adapters.slack.translate import PERSON_SUBTYPES, unescape
from adapters.slack.users import UserDirectory
from bot.domain import Author, EarlierMessage

log = logging.getLogger(__name__)

#: Slack's own cap on one page of conversations.replies.
MAX_PAGE = 1000


class SlackThread:
    """The messages of thread `thread_ts` in `channel` before `message_ts` (the mention)."""

    def __init__(
        self,
        client: AsyncWebClient,
        users: UserDirectory,
        *,
        channel: str,
        thread_ts: str,
        message_ts: str,
        bot_user_id: str | None,
        bot_id: str | None,
    ) -> None:
        self._client = client
        self._users = users
        self._channel = channel
        self._thread_ts = thread_ts
        self._message_ts = message_ts
        self._bot_user_id = bot_user_id
        self._bot_id = bot_id

    async def earlier_messages(self, limit: int) -> list[EarlierMessage]:
        """The thread's first `limit` messages before the mention (its parent first): one page,
        as Slack rate-limits this method, for some apps to one call a minute. Any failure
        (missing scope, rate limit) gives [] and a log line: the answer goes on without them."""
        try:
            response = await self._client.conversations_replies(
                channel=self._channel,
                ts=self._thread_ts,
                latest=self._message_ts,
                inclusive=False,
                limit=min(MAX_PAGE, max(1, limit)),
            )
        except SlackApiError as exc:
            log.warning(
                "could not read the thread's earlier messages (conversations.replies: %s)",
                describe(exc),
            )
            return []
        except Exception:
            log.warning("could not read the thread's earlier messages", exc_info=True)
            return []
        messages = response.get("messages")
        found: list[EarlierMessage] = []
        for message in messages if isinstance(messages, list) else []:
            earlier = await self._earlier(message) if isinstance(message, dict) else None
            if earlier is not None:
                found.append(earlier)
        return found[:limit]

    async def _earlier(self, message: Mapping[str, Any]) -> EarlierMessage | None:
        ts, text = message.get("ts"), message.get("text")
        if (
            not isinstance(ts, str)
            or not isinstance(text, str)
            or not _before(ts, self._message_ts)
        ):
            return None
        user = message.get("user")
        if self._by_this_bot(message):
            return EarlierMessage(Author(str(user or "bot"), "tokbot"), unescape(text), ts, True)
        if message.get("bot_id"):  # another app: its messages are part of the thread, too
            name = _bot_name(message)
            return EarlierMessage(
                Author(str(message["bot_id"]), name, is_bot=True), unescape(text), ts
            )
        if message.get("subtype") not in PERSON_SUBTYPES or not isinstance(user, str):
            return None  # joins, edits, deletions and the like
        author = await self._users.author(user)
        return EarlierMessage(author, unescape(text), ts)

    def _by_this_bot(self, message: Mapping[str, Any]) -> bool:
        bot_id, user = message.get("bot_id"), message.get("user")
        return bool(bot_id and bot_id == self._bot_id) or bool(user and user == self._bot_user_id)


def _before(ts: str, than: str) -> bool:
    try:
        return float(ts) < float(than)
    except ValueError:
        return False


def _bot_name(message: Mapping[str, Any]) -> str:
    profile = message.get("bot_profile")
    if isinstance(profile, dict) and isinstance(profile.get("name"), str):
        return str(profile["name"])
    return str(message.get("username") or "a bot")

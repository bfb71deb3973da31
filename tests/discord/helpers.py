"""Waiting for what a Discord user would see in the fake."""

from __future__ import annotations

from typing import Any

from adapters.discord.fake import FakeDiscord, FakeMessage

CHAT = "/v1/chat/completions"


def text_of(messages: list[FakeMessage]) -> str:
    return "\n".join(m.content for m in messages)


async def answer(
    fake: FakeDiscord, interaction: dict[str, Any], contains: str, timeout: float = 10.0
) -> list[FakeMessage]:
    """The interaction's messages, once one of them shows `contains`."""
    await fake.wait_for(lambda: contains in text_of(fake.replies_to(interaction)), timeout)
    return fake.replies_to(interaction)


async def reply(
    fake: FakeDiscord, message: dict[str, Any], contains: str, timeout: float = 10.0
) -> list[FakeMessage]:
    """The bot's messages in the message's channel, once one shows `contains`."""

    def found() -> list[FakeMessage]:
        return [m for m in fake.in_channel(message["channel_id"]) if contains in m.content]

    await fake.wait_for(lambda: bool(found()), timeout)
    return fake.in_channel(message["channel_id"])

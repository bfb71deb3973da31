"""The buttons under an answer on Discord: ⏹️ Stop while it streams, then 👍 / 👎.

They are discord.py `DynamicItem`s: their state (which answer, which feedback) lives in the
custom_id, and the client registers their templates at start-up (`add_dynamic_items`), so a click
on a message sent before a restart, or by another replica, still reaches the core. Every click is
acknowledged with an ephemeral message only the clicker sees."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, cast

import discord

from adapters.discord import translate
from bot.domain import AnswerControls, FeedbackValue

if TYPE_CHECKING:
    from adapters.discord.client import TokbotClient

log = logging.getLogger(__name__)

FEEDBACK_ID = "tokbot:feedback:{value}:{turn_id}"
STOP_ID = "tokbot:stop:{turn_id}"
SORRY = "😵 Sorry, I couldn't take that click; please try again."
Button = discord.ui.Button[discord.ui.View]


class FeedbackButton(
    discord.ui.DynamicItem[Button],
    template=r"tokbot:feedback:(?P<value>positive|negative):(?P<turn_id>[0-9]{1,19})",
):
    def __init__(self, value: FeedbackValue, turn_id: int) -> None:
        positive = value is FeedbackValue.POSITIVE
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.secondary,
                emoji="👍" if positive else "👎",
                custom_id=FEEDBACK_ID.format(value=value.value, turn_id=turn_id),
            )
        )
        self.value = value
        self.turn_id = turn_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> FeedbackButton:
        return cls(FeedbackValue(match["value"]), int(match["turn_id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client = _client(interaction)
        user = translate.interaction_author(interaction, client.settings)
        await _acknowledge(
            interaction,
            client.core.record_feedback(translate.PLATFORM, self.turn_id, user, self.value),
        )


class StopButton(discord.ui.DynamicItem[Button], template=r"tokbot:stop:(?P<turn_id>[0-9]{1,19})"):
    def __init__(self, turn_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.secondary,
                emoji="⏹️",
                label="Stop",
                custom_id=STOP_ID.format(turn_id=turn_id),
            )
        )
        self.turn_id = turn_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> StopButton:
        return cls(int(match["turn_id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client = _client(interaction)
        user = translate.interaction_author(interaction, client.settings)
        await _acknowledge(interaction, client.core.stop_answer(self.turn_id, user))


def view(controls: AnswerControls | None) -> discord.ui.View | None:
    """The buttons for an answer's message (None: none). Persistent: no timeout."""
    if controls is None:
        return None
    buttons = discord.ui.View(timeout=None)
    if controls.streaming:
        buttons.add_item(StopButton(controls.turn_id))
    else:
        for value in FeedbackValue:
            buttons.add_item(FeedbackButton(value, controls.turn_id))
    return buttons


def _client(interaction: discord.Interaction[Any]) -> TokbotClient:
    return cast("TokbotClient", interaction.client)


async def _acknowledge(interaction: discord.Interaction[Any], work: Any) -> None:
    """Run the core's part, then tell the clicker (only them) what it did, within Discord's
    3 seconds for a first response."""
    try:
        text = str(await work)
    except Exception:
        log.exception("a button click failed")
        text = SORRY
    try:
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )
    except discord.HTTPException as exc:
        log.warning("could not acknowledge a button click: %s", exc)

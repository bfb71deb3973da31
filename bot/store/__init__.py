"""Persistence: conversations and their turns, channel settings, usage, feedback, events."""

from bot.store.migrate import head_revision, upgrade_to_head
from bot.store.models import DEFAULT_TRANSCRIPTION_MODE, TRANSCRIPTION_MODES
from bot.store.store import AnswerInfo, ChannelFeedback, ChannelSettings, Store, UsageSummary

__all__ = [
    "DEFAULT_TRANSCRIPTION_MODE",
    "TRANSCRIPTION_MODES",
    "AnswerInfo",
    "ChannelFeedback",
    "ChannelSettings",
    "Store",
    "UsageSummary",
    "head_revision",
    "upgrade_to_head",
]

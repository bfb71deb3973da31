"""Discord objects → domain types: conversation keys, authors (with the admin check) and
attachments."""

from __future__ import annotations

import re

import discord

from bot.domain import Attachment, Author, ConversationKey
from bot.media import is_audio_attachment
from bot.settings import Settings

PLATFORM = "discord"
_MENTION = re.compile(r"<@!?(\d+)>")


def conversation_key(
    guild_id: int | None, channel: discord.abc.Snowflake | None, channel_id: int | None
) -> ConversationKey:
    """A thread is its own conversation under its parent channel (whose settings it uses)."""
    workspace = str(guild_id) if guild_id else "dm"
    if isinstance(channel, discord.Thread):
        parent = channel.parent_id
        return ConversationKey(PLATFORM, workspace, str(parent), str(channel.id))
    if channel_id is None and channel is not None:
        channel_id = channel.id
    return ConversationKey(PLATFORM, workspace, str(channel_id or ""))


def message_key(message: discord.Message) -> ConversationKey:
    guild_id = message.guild.id if message.guild else None
    return conversation_key(guild_id, message.channel, message.channel.id)


def interaction_key(interaction: discord.Interaction) -> ConversationKey:
    return conversation_key(interaction.guild_id, interaction.channel, interaction.channel_id)


def admin_role_ids(settings: Settings) -> frozenset[int]:
    parts = settings.discord_admin_role_ids.replace(" ", "").split(",")
    return frozenset(int(p) for p in parts if p.isdigit())


def is_admin(user: discord.User | discord.Member, settings: Settings, *, can_manage: bool) -> bool:
    """Manage Server, or a role in DISCORD_ADMIN_ROLE_IDS, or a user in TOKBOT_ADMIN_USER_IDS."""
    if can_manage or str(user.id) in settings.admin_ids:
        return True
    if isinstance(user, discord.Member):
        roles = admin_role_ids(settings)
        return any(role.id in roles for role in user.roles) or bool(
            roles & {int(r) for r in getattr(user, "_roles", ())}
        )
    return False


def author(user: discord.User | discord.Member, settings: Settings, *, can_manage: bool) -> Author:
    return Author(
        id=str(user.id),
        name=user.display_name,
        is_admin=is_admin(user, settings, can_manage=can_manage),
        is_bot=user.bot,
    )


def interaction_author(interaction: discord.Interaction, settings: Settings) -> Author:
    can_manage = interaction.guild_id is not None and interaction.permissions.manage_guild
    return author(interaction.user, settings, can_manage=can_manage)


def message_author(message: discord.Message, settings: Settings) -> Author:
    user = message.author
    can_manage = False
    if isinstance(user, discord.Member):
        try:
            can_manage = user.guild_permissions.manage_guild
        except Exception:  # partial guild data (no roles cached): fall back to roles and ids
            can_manage = False
    return author(user, settings, can_manage=can_manage)


def attachment(item: discord.Attachment) -> Attachment:
    return Attachment(
        filename=item.filename,
        content_type=item.content_type,
        size=item.size,
        url=item.url,
        is_voice=item.is_voice_message(),
        ref=item,
    )


def attachments(message: discord.Message) -> tuple[Attachment, ...]:
    return tuple(attachment(a) for a in message.attachments)


def is_voice(message: discord.Message) -> bool:
    """A voice message (the flag) or any audio upload."""
    found = attachments(message)
    return bool(found) and (message.flags.voice or any(is_audio_attachment(a) for a in found))


def strip_mentions(text: str, bot_id: int) -> str:
    """Drop the mention of the bot that addressed it; keep other text as written."""
    return " ".join(_MENTION.sub(lambda m: "" if int(m[1]) == bot_id else m[0], text).split())

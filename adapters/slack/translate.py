"""Slack payloads to domain types and back: conversation keys, the text a person typed (minus the
bot's mention), attachments from shared files, and escaping of everything the bot says."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.slack import mrkdwn
from bot.domain import Attachment, Author, ConversationKey, Incoming

PLATFORM = "slack"

#: Commands whose argument changes channel settings: only admins may pass one.
ADMIN_COMMANDS = frozenset({"model", "persona", "transcription", "budget", "memory"})

#: Message subtypes that are people talking (everything else — joins, edits, deletions, bot
#: messages — is ignored).
PERSON_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})

_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")


def escape(text: str) -> str:
    """Slack's control characters as entities, so no text of ours can become a mention
    (`<!channel>`, `<!here>`, `<!subteam^…>`, `<@U…>`) or a link."""
    return mrkdwn.escape(text)


def to_slack(text: str) -> str:
    """Text ready for Slack: the Markdown that models and the core write, as mrkdwn, escaped so
    it can never mention anyone (see `adapters.slack.mrkdwn`)."""
    return mrkdwn.to_mrkdwn(text)


def unescape(text: str) -> str:
    """What a person typed: Slack sends `&`, `<`, `>` as entities."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def strip_mention(text: str, bot_user_id: str | None) -> str:
    """The text without the bot's own mentions (other people's mentions stay)."""
    if bot_user_id:
        text = _MENTION.sub(lambda m: "" if m.group(1) == bot_user_id else m.group(0), text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def command_name(slash: str) -> str:
    """`/ask` → `ask`."""
    return slash.strip().lstrip("/").lower()


def conversation_key(team_id: str, channel_id: str, thread_ts: str = "") -> ConversationKey:
    return ConversationKey(PLATFORM, team_id, channel_id, thread_ts)


def event_thread(event: Mapping[str, Any]) -> str:
    """The thread a message starts or continues: its parent's ts, else its own."""
    return str(event.get("thread_ts") or event.get("ts") or "")


def mentions(event: Mapping[str, Any], bot_user_id: str | None) -> bool:
    """Whether the message's text mentions the bot."""
    text = str(event.get("text") or "")
    return bool(bot_user_id) and any(m.group(1) == bot_user_id for m in _MENTION.finditer(text))


def claim_id(event: Mapping[str, Any], command: str, envelope_id: Any) -> str | None:
    """What the core claims so a message is handled once: the message itself (channel and ts)
    rather than the envelope, because one message can arrive as two events (`message` and
    `app_mention`), each retried under its own event id. Per command: a voice clip that also
    mentions the bot is transcribed and asked about."""
    channel, ts = event.get("channel"), event.get("ts")
    if isinstance(channel, str) and channel and isinstance(ts, str) and ts:
        return f"message:{channel}:{ts}:{command}"
    return str(envelope_id) if envelope_id else None


def is_direct_message(event: Mapping[str, Any]) -> bool:
    return event.get("channel_type") == "im" or str(event.get("channel", "")).startswith("D")


def is_from_bot(event: Mapping[str, Any]) -> bool:
    return bool(event.get("bot_id")) or event.get("subtype") == "bot_message"


def is_audio_file(file: Mapping[str, Any]) -> bool:
    """A voice clip (subtype `slack_audio`) or any upload with an `audio/*` mimetype."""
    mimetype = str(file.get("mimetype") or "").lower()
    return file.get("subtype") == "slack_audio" or mimetype.startswith("audio/")


def attachment(file: Mapping[str, Any]) -> Attachment:
    size = file.get("size")
    return Attachment(
        filename=str(file.get("name") or file.get("title") or file.get("id") or "file"),
        content_type=file.get("mimetype") or None,
        size=size if isinstance(size, int) else None,
        url=file.get("url_private_download") or file.get("url_private"),
        is_voice=file.get("subtype") == "slack_audio",
        ref=file.get("id"),
    )


def audio_attachments(files: Sequence[Mapping[str, Any]]) -> tuple[Attachment, ...]:
    return tuple(attachment(f) for f in files if is_audio_file(f))


def well_formed(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The event with the fields tokbot reads in the types Slack documents (text a string, files
    a list of objects), or None when it names no user or channel to answer."""
    user, channel = event.get("user"), event.get("channel")
    if not isinstance(user, str) or not user or not isinstance(channel, str) or not channel:
        return None
    cleaned = dict(event)
    if not isinstance(cleaned.get("text"), str):
        cleaned["text"] = ""
    files = cleaned.get("files")
    cleaned["files"] = [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []
    for name in ("ts", "thread_ts"):
        if name in cleaned and not isinstance(cleaned[name], str):
            del cleaned[name]
    return cleaned


def from_command(command: Mapping[str, Any], author: Author) -> Incoming:
    """A slash command: answered in its channel (not a thread)."""
    trigger = command.get("trigger_id")
    return Incoming(
        key=conversation_key(str(command.get("team_id", "")), str(command.get("channel_id", ""))),
        author=author,
        command=command_name(str(command.get("command", ""))),
        text=unescape(str(command.get("text") or "")),
        # Slack doesn't retry commands, but a Socket Mode envelope may be redelivered.
        event_id=f"command:{trigger}" if trigger else None,
        slash=True,
    )


def from_message(
    event: Mapping[str, Any],
    *,
    team_id: str,
    author: Author,
    bot_user_id: str | None,
    event_id: str | None,
    command: str = "ask",
    attachments: tuple[Attachment, ...] = (),
) -> Incoming:
    """A mention, DM or audio upload: answered in the thread it starts or continues."""
    text = unescape(strip_mention(str(event.get("text") or ""), bot_user_id))
    return Incoming(
        key=conversation_key(team_id, str(event.get("channel", "")), event_thread(event)),
        author=author,
        command=command,
        text="" if command == "voice" else text,
        attachments=attachments,
        message_id=str(event["ts"]) if event.get("ts") else None,
        event_id=event_id,
    )


# -- team memory: channel messages not addressed to the bot --------------------------------------

#: Hidden `message` subtypes that change a message people sent (Slack's message_changed carries
#: the new message under `message`; message_deleted names it by `deleted_ts`).
EDITED, DELETED = "message_changed", "message_deleted"


def permalink(workspace_url: str | None, channel: str, ts: str, thread_ts: str = "") -> str | None:
    """A message's link in the form chat.getPermalink returns
    (`https://<workspace>.slack.com/archives/<channel>/p<ts without the dot>`, a thread reply
    with `?thread_ts=…&cid=…`), built without a call per message."""
    if not workspace_url or not ts:
        return None
    link = f"{workspace_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"
    if thread_ts and thread_ts != ts:
        link += f"?thread_ts={thread_ts}&cid={channel}"
    return link


def observable(event: Mapping[str, Any], bot_user_id: str | None) -> bool:
    """A person's message in a channel (not a DM) that does not mention the bot: what team
    memory keeps when the channel has it on."""
    return not is_direct_message(event) and not mentions(event, bot_user_id)


def is_mention_companion(event: Mapping[str, Any], bot_user_id: str | None) -> bool:
    """The `message` event Slack sends beside every `app_mention` in a channel: a person's plain
    message (no subtype, no files) that mentions the bot. Its app_mention answers it, and memory
    keeps no message addressed to the bot, so nothing is done with it."""
    return (
        event.get("type") == "message"
        and event.get("subtype") is None
        and not event.get("files")
        and not is_from_bot(event)
        and isinstance(event.get("user"), str)
        and isinstance(event.get("channel"), str)
        and isinstance(event.get("text"), str)
        and not is_direct_message(event)
        and mentions(event, bot_user_id)
    )


def changed_message(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """A message_changed event's (ts, new text), or None when it is not a person's edit."""
    message = event.get("message")
    if not isinstance(message, Mapping) or is_from_bot(message):
        return None
    ts, text = message.get("ts"), message.get("text")
    if not isinstance(ts, str) or not ts or not isinstance(text, str):
        return None
    return ts, unescape(text)

"""What an accepted event stores so any process can answer it later: the message and its reply
route, as JSON (ids only, never a credential), and its conversation's lock number."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from bot.domain import Attachment, Author, ConversationKey, Incoming

Route = Mapping[str, str]


def encode(incoming: Incoming, route: Route) -> str:
    """What answering the event later needs, as JSON (no credentials: routes hold ids)."""
    return json.dumps(
        {
            "key": [incoming.key.platform, incoming.key.workspace, incoming.key.channel,
                    incoming.key.thread],
            "author": [incoming.author.id, incoming.author.name, incoming.author.is_admin,
                       incoming.author.is_bot],
            "command": incoming.command,
            "text": incoming.text,
            "options": incoming.options,
            "attachments": [
                [a.filename, a.content_type, a.size, a.url, a.is_voice,
                 a.ref if isinstance(a.ref, str) else None]
                for a in incoming.attachments
            ],
            "message_id": incoming.message_id,
            "event_id": incoming.event_id,
            "slash": incoming.slash,
            "route": dict(route),
        },
        separators=(",", ":"),
    )  # fmt: skip


def decode(payload: str) -> tuple[Incoming, dict[str, str]]:
    data = json.loads(payload)
    incoming = Incoming(
        key=ConversationKey(*data["key"]),
        author=Author(*data["author"]),
        command=data["command"],
        text=data["text"],
        options=dict(data["options"]),
        attachments=tuple(
            Attachment(name, ctype, size, url, voice, ref)
            for name, ctype, size, url, voice, ref in data["attachments"]
        ),
        message_id=data["message_id"],
        event_id=data["event_id"],
        slash=bool(data["slash"]),
    )
    return incoming, dict(data["route"])


def line_number(key: ConversationKey) -> int:
    """A signed 64-bit number for the conversation (PostgreSQL's advisory lock key)."""
    digest = hashlib.blake2b(repr(tuple(vars(key).values())).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)

"""The inbox: every platform event is stored before it is acknowledged and answered in its
conversation's order by whichever process is alive (see `bot.inbox.inbox`)."""

from bot.inbox.codec import Route, decode, encode, line_number
from bot.inbox.inbox import EVENT_MEMORY_SECONDS, Inbox, Recoverer, Ticket
from bot.inbox.lines import Lines

__all__ = [
    "EVENT_MEMORY_SECONDS",
    "Inbox",
    "Lines",
    "Recoverer",
    "Route",
    "Ticket",
    "decode",
    "encode",
    "line_number",
]

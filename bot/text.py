"""Platform-neutral text helpers: splitting long text at a platform's message limit."""

from __future__ import annotations

import re

#: A Markdown code fence's opening line (CommonMark: up to 3 spaces, 3+ backticks, an info
#: string without backticks). Shared with the adapters' Markdown converters.
FENCE_OPEN = re.compile(r"^ {0,3}(`{3,})([^`]*)$")
_FENCE_CLOSE = "```"


def is_fence_close(line: str, opening: str) -> bool:
    """Whether `line` closes the fence that `opening` (its backticks) opened."""
    stripped = line.strip()
    return (
        len(line) - len(line.lstrip(" ")) <= 3
        and len(stripped) >= len(opening)
        and set(stripped) == {"`"}
    )


def split_message(text: str, limit: int) -> list[str]:
    """Cut `text` into pieces of at most `limit` characters whose concatenation is `text`.

    Prefers to cut after a paragraph break, then a line break, then a space, so words and lines
    stay whole; only a single run longer than `limit` is cut mid-word. Never cuts inside a
    fenced code block: the cut moves to before the fence; a block too long for one piece is cut
    at a line break, closed at the end of the piece and reopened (same info string) at the
    start of the next, so each piece renders on its own. Only then do the pieces hold more than
    `text` (the added fence lines).

    The pieces of a text that keeps growing are stable: a piece followed by another is fixed by
    the text before the next cut, so a streamed answer can re-split its whole text each time.
    """
    if limit <= 0:
        raise ValueError("limit must be positive")
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut, reopen = _best_cut(rest, limit)
        if reopen is None:
            pieces.append(rest[:cut])
            rest = rest[cut:]
        else:
            piece = rest[:cut]
            pieces.append(piece + ("" if piece.endswith("\n") else "\n") + _FENCE_CLOSE)
            rest = reopen + rest[cut:]
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def _best_cut(text: str, limit: int) -> tuple[int, str | None]:
    """Where to cut `text` (longer than `limit`), and the fence line to reopen after the cut
    when the cut is inside a code block (None outside one)."""
    cut = _plain_cut(text, limit)
    block = _block_around(text, cut)
    if block is None:
        return cut, None
    start, line, end = block
    if end is not None and end <= limit:
        return end, None  # the whole block fits: cut after it
    if start > 0:
        return start, None  # the block starts a piece of its own
    # The piece starts with a block longer than a piece: cut it at a line inside, keeping room
    # for the closing fence ("\n```"); the next piece reopens it.
    reopen = line + "\n"
    room = limit - len(_FENCE_CLOSE) - 1
    if room <= len(reopen):
        return cut, None  # a limit this small can't hold fences: plain pieces
    at = text.rfind("\n", len(reopen), room)
    cut = at + 1 if at >= len(reopen) + (room - len(reopen)) // 5 else room
    return cut, reopen


def _plain_cut(text: str, limit: int) -> int:
    window = text[:limit]
    # Don't accept a cut in the first fifth: tiny pieces read worse than a mid-word cut.
    floor = limit // 5
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator)
        if at >= floor:
            return at + len(separator)
    return limit


def _block_around(text: str, cut: int) -> tuple[int, str, int | None] | None:
    """The fenced block that `cut` falls inside (its opening line included): its start, its
    opening line, and where it ends (after its closing line; None while unclosed). None
    when `cut` is outside every block."""
    opened: tuple[int, str, str] | None = None  # start, line, backticks
    position = 0
    for line in text.split("\n"):
        end = position + len(line)
        if opened is None:
            if position >= cut:
                return None
            match = FENCE_OPEN.match(line)
            if match:
                opened = (position, line, match.group(1))
        elif is_fence_close(line, opened[2]):
            if end > cut:
                return opened[0], opened[1], min(end + 1, len(text))
            opened = None
        position = end + 1
    return (opened[0], opened[1], None) if opened is not None else None


def one_line(text: str, limit: int = 200) -> str:
    """Collapse whitespace and shorten, for quoting foreign text (error messages) in a reply."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def clean_text(text: str) -> str:
    """What a person sent, storable and sendable anywhere: without NUL characters (PostgreSQL
    refuses them in text) and with lone UTF-16 surrogates (not encodable as UTF-8) replaced."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text

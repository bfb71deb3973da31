"""Platform-neutral text helpers: splitting long text at a platform's message limit."""

from __future__ import annotations


def split_message(text: str, limit: int) -> list[str]:
    """Cut `text` into pieces of at most `limit` characters whose concatenation is `text`.

    Prefers to cut after a paragraph break, then a line break, then a space, so words and lines
    stay whole; only a single run longer than `limit` is cut mid-word.
    """
    if limit <= 0:
        raise ValueError("limit must be positive")
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = _best_cut(rest, limit)
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def _best_cut(text: str, limit: int) -> int:
    window = text[:limit]
    # Don't accept a cut in the first fifth: tiny pieces read worse than a mid-word cut.
    floor = limit // 5
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator)
        if at >= floor:
            return at + len(separator)
    return limit


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

"""An incremental decoder for server-sent events (the `data:` payloads only).

Bytes arrive in arbitrary pieces: a UTF-8 character (tokbot's stand-in replies use « ») or a
CRLF pair may be split between two reads, so decoding and line splitting keep state.
"""

from __future__ import annotations

import codecs
import re

_LINE_END = re.compile(r"\r\n|\n|\r")


class SSEDecoder:
    """Feed raw bytes, get back the `data` of each completed event (multi-line data joined)."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        """Add bytes; return the events they completed, in order."""
        self._buffer += self._text.decode(chunk)
        return self._drain(final=False)

    def close(self) -> list[str]:
        """End of stream: flush a last unterminated line and event (lenient, unlike the spec)."""
        self._buffer += self._text.decode(b"", final=True)
        events = self._drain(final=True)
        if self._buffer:
            self._line(self._buffer)
            self._buffer = ""
        if self._data:
            events.append("\n".join(self._data))
            self._data = []
        return events

    def _drain(self, *, final: bool) -> list[str]:
        events: list[str] = []
        buffer, start = self._buffer, 0  # an index, not a slice per line: one copy per feed
        while (match := _LINE_END.search(buffer, start)) is not None:
            if match.group() == "\r" and match.end() == len(buffer) and not final:
                break  # maybe the first half of "\r\n": wait for the next chunk
            event = self._line(buffer[start : match.start()])
            start = match.end()
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> str | None:
        if not line:  # a blank line dispatches the event
            if not self._data:
                return None
            event = "\n".join(self._data)
            self._data = []
            return event
        if line.startswith(":"):  # comment / keep-alive
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        return None  # event:, id:, retry: carry nothing tokbot needs

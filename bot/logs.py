"""Logging set-up with secret redaction: no key or token reaches a log line, whatever logs it."""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from pathlib import Path

REDACTED = "[redacted]"

#: The id of the message being handled; every log line written while handling it carries it,
#: from the adapter through TokModel to the reply (and the apology's "reference" is the same id).
request_id: ContextVar[str] = ContextVar("request_id", default="-")


def make_request_id() -> str:
    return uuid.uuid4().hex[:12]


def new_request_id() -> str:
    """Start a new request id in the current context (an adapter's task for one message) and
    return it."""
    value = make_request_id()
    request_id.set(value)
    return value


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request_id, message (and traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["traceback"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class SecretRedactor(logging.Filter):
    """Replaces every known secret in a record's final message (and traceback) with [redacted]."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def redact_unfinished(self, text: str) -> str:
        """`redact` for text that is still growing (a streamed answer): also holds back a tail
        that could be the start of a secret, so no piece of one is ever shown."""
        text = self.redact(text)
        held = 0
        for secret in self._secrets:
            tail = text[-(len(secret) - 1) :] if len(secret) > 1 else ""
            for start, char in enumerate(tail):
                if char == secret[0] and secret.startswith(tail[start:]):
                    held = max(held, len(tail) - start)
                    break
        return text[: len(text) - held]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        # Format first: once redacted text replaces `msg`, a "%" in it (or in a traceback)
        # must never meet `args` again, or logging prints the raw record, secrets included.
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: show its parts rather than lose the line
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            # Formatters print a cached `exc_text` as it is: cache the redacted traceback.
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def configure_logging(level: str, secrets: Iterable[str], *, json_format: bool = False) -> None:
    """One handler on stderr, one line per event, every record passed through the redactor."""
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    handler.addFilter(RequestIdFilter())
    handler.addFilter(SecretRedactor(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log would print every fake-server request in the console; keep it quiet.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Alembic narrates every start-up at INFO; only its problems matter to an operator.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))


def log_to_file(path: Path) -> None:
    """Write the configured log lines to `path` (appending) instead of stderr."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = path.open("a", encoding="utf-8", buffering=1)  # line-buffered: tail -f works
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)

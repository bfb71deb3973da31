"""TokModel's failures as one typed tree.

`error_for_status` is the single place where an HTTP status and TokModel's error body become an
exception; everything above the client catches these types, never raw HTTP errors.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any


class TokModelError(Exception):
    """Any failure talking to TokModel."""

    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.error_type = error_type


class BadRequest(TokModelError):
    """400 (and other 4xx without a type of their own): the request was wrong."""

    status = 400


class Unauthorized(TokModelError):
    """401: the API key is missing, invalid or revoked."""

    status = 401


class InsufficientCredits(TokModelError):
    """403: the key is valid but the account has no credits left."""

    status = 403


class NotFound(TokModelError):
    """404: e.g. an unknown model id."""

    status = 404


class RateLimited(TokModelError):
    """429: too many requests; `retry_after` is seconds from `Retry-After`, when given."""

    status = 429

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        error_type: str | None = None,
    ):
        super().__init__(message, status=status, error_type=error_type)
        self.retry_after = retry_after


class ServerError(TokModelError):
    """5xx: TokModel or its upstream provider failed."""

    status = 500


class Timeout(TokModelError):
    """No complete answer within the configured time; `partial` is any streamed text so far."""

    def __init__(self, message: str, *, partial: str = ""):
        super().__init__(message)
        self.partial = partial


class ConnectionFailed(TokModelError):
    """TokModel could not be reached at all."""


class StreamBroken(TokModelError):
    """A streamed answer ended before `data: [DONE]`; `partial` is the text received so far."""

    def __init__(self, message: str, *, partial: str = ""):
        super().__init__(message)
        self.partial = partial


class MalformedResponse(TokModelError):
    """TokModel answered 2xx with a body we could not read."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP-date); None when unreadable."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_message_from_body(body: bytes) -> tuple[str | None, str | None]:
    """`(error.message, error.type)` from TokModel's documented body, tolerating other shapes."""
    try:
        data: Any = json.loads(body.decode("utf-8", errors="replace"))
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    err = data.get("error")
    if isinstance(err, dict):
        msg = err.get("message")
        etype = err.get("type")
        return (str(msg) if msg is not None else None, str(etype) if etype is not None else None)
    if isinstance(err, str):
        return err, None
    msg = data.get("message")
    return (str(msg) if msg is not None else None, None)


def error_for_status(status: int, body: bytes, retry_after_header: str | None) -> TokModelError:
    """Turn a non-2xx response into the matching exception."""
    message, error_type = error_message_from_body(body)
    text = message or f"HTTP {status}"
    if status == 401:
        return Unauthorized(text, status=status, error_type=error_type)
    if status == 403:
        return InsufficientCredits(text, status=status, error_type=error_type)
    if status == 404:
        return NotFound(text, status=status, error_type=error_type)
    if status == 429:
        return RateLimited(
            text,
            retry_after=parse_retry_after(retry_after_header),
            status=status,
            error_type=error_type,
        )
    if status >= 500:
        return ServerError(text, status=status, error_type=error_type)
    return BadRequest(text, status=status, error_type=error_type)

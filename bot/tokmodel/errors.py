"""TokModel's failures as one typed tree.

`error_for_status` is the single place where an HTTP status and TokModel's error body become an
exception; everything above the client catches these types, never raw HTTP errors.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any


class TokModelError(Exception):
    """Any failure talking to TokModel."""

    status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        path: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.error_type = error_type
        #: A string code such as "model_not_found" (OpenAI, LiteLLM); TokModel's integer echo
        #: of the status is not kept.
        self.code = code
        #: The request field the error is about ("model"), when the body says.
        self.param = param
        #: The request's path (never its query), to say what was not found.
        self.path = path

    def is_about_model(self, model: str | None = None) -> bool:
        """True when the body says the failure concerns the model id (not a route or a file)."""
        marks = {self.code, self.param, self.error_type}
        if marks & {"model", "model_not_found", "invalid_model", "model_not_available"}:
            return True
        return bool(model) and str(model) in self.message


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
        code: str | None = None,
        param: str | None = None,
        path: str | None = None,
    ):
        super().__init__(
            message, status=status, error_type=error_type, code=code, param=param, path=path
        )
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


class ImageRejected(MalformedResponse):
    """An image TokModel sent (or linked to) is not a PNG/JPEG/WebP/GIF, or is too large."""


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


@dataclass(frozen=True)
class ErrorBody:
    """What an error body says, whatever its shape."""

    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None


def parse_error_body(body: bytes) -> ErrorBody:
    """Read TokModel's documented `{"error": {"message", "type", "code": <int>}}` and the other
    shapes OpenAI-compatible gateways send: OpenAI's string `code`/`param`, a bare `"error"`
    string, `{"message": …}`, and FastAPI's `{"detail": "…"}` / `{"detail": [{loc, msg}]}`
    (LiteLLM answers unknown routes and invalid bodies that way)."""
    try:
        data: Any = json.loads(body.decode("utf-8", errors="replace"))
    except (ValueError, UnicodeDecodeError):
        return ErrorBody()
    if not isinstance(data, dict):
        return ErrorBody()
    err = data.get("error")
    if isinstance(err, dict):
        return ErrorBody(
            _text(err.get("message")),
            _text(err.get("type")),
            _string_code(err.get("code")),
            _text(err.get("param")),
        )
    if isinstance(err, str):
        return ErrorBody(err)
    detail = data.get("detail")
    if isinstance(detail, str):
        return ErrorBody(detail)
    if isinstance(detail, list) and detail:
        return _fastapi_validation(detail)
    return ErrorBody(_text(data.get("message")))


def _fastapi_validation(items: list[Any]) -> ErrorBody:
    """FastAPI's 422 list: `[{"loc": ["body", "model"], "msg": "field required", ...}]`."""
    parts, param = [], None
    for item in items[:3]:
        if not isinstance(item, dict):
            continue
        loc = item.get("loc")
        names = [str(p) for p in loc if p != "body"] if isinstance(loc, list) else []
        msg = _text(item.get("msg")) or "invalid"
        parts.append(f"{'.'.join(names)}: {msg}" if names else msg)
        param = param or (names[-1] if names else None)
    return ErrorBody("; ".join(parts) or None, param=param)


def _text(value: object) -> str | None:
    return str(value) if value is not None and not isinstance(value, dict | list) else None


def _string_code(value: object) -> str | None:
    """A meaningful string code; TokModel's integer status (or "404" as text) says nothing new."""
    if not isinstance(value, str) or not value or value.isdigit():
        return None
    return value


def error_message_from_body(body: bytes) -> tuple[str | None, str | None]:
    """`(message, type)` from an error body of any shape `parse_error_body` reads."""
    parsed = parse_error_body(body)
    return parsed.message, parsed.type


#: String codes that mean the account cannot pay, whatever the status: OpenAI answers 429
#: `insufficient_quota`, which retrying cannot fix.
_NO_CREDIT_CODES = frozenset({"insufficient_quota", "insufficient_credits", "billing_hard_limit"})


def error_for_status(
    status: int, body: bytes, retry_after_header: str | None, *, path: str | None = None
) -> TokModelError:
    """Turn a non-2xx response into the matching exception; `path` (no query) names what was
    asked for, so a 404 can say what was not found."""
    parsed = parse_error_body(body)
    text = parsed.message or f"HTTP {status}"
    details: dict[str, Any] = {
        "status": status,
        "error_type": parsed.type,
        "code": parsed.code,
        "param": parsed.param,
        "path": path,
    }
    if status == 401:
        return Unauthorized(text, **details)
    if status == 403 or parsed.code in _NO_CREDIT_CODES:
        return InsufficientCredits(text, **details)
    if status == 404:
        return NotFound(text, **details)
    if status == 429:
        return RateLimited(text, retry_after=parse_retry_after(retry_after_header), **details)
    if status >= 500:
        return ServerError(text, **details)
    return BadRequest(text, **details)

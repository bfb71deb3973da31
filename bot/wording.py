"""What people read when TokModel fails. One function per failure, so the wording stays in one
place and is the same on every platform."""

from __future__ import annotations

import math

from bot.text import one_line
from bot.tokmodel.errors import (
    BadRequest,
    ConnectionFailed,
    ImageRejected,
    InsufficientCredits,
    MalformedResponse,
    NotFound,
    RateLimited,
    ServerError,
    StreamBroken,
    Timeout,
    TokModelError,
    Unauthorized,
)

KEPT = "Your message is saved."


def describe_tokmodel_error(exc: TokModelError, *, model: str | None = None) -> str:
    """A one-paragraph, friendly description of a TokModel failure, with what to do next."""
    if isinstance(exc, InsufficientCredits):
        return (
            "🪫 The TokModel account behind this bot is out of credits. An admin needs to top it "
            "up (TokModel console → Billing → Top up). Nothing was charged, and your message is "
            "saved: ask again once credits are added."
        )
    if isinstance(exc, RateLimited):
        return (
            f"⏳ TokModel is busy right now. Please try again {_in_about(exc.retry_after)}. " + KEPT
        )
    if isinstance(exc, Unauthorized):
        return (
            "🔑 TokModel rejected this bot's API key. An admin must set a valid "
            f"TOKMODEL_API_KEY and restart the bot. {KEPT}"
        )
    if isinstance(exc, NotFound | BadRequest) and model and exc.code == "model_not_found":
        return _unknown_model(model)
    if isinstance(exc, NotFound):
        # Only blame the model when the body is about it: a 404 is just as often a route the
        # gateway does not serve or an image URL that expired.
        if model and exc.is_about_model(model):
            return _unknown_model(model)
        what = f"`{exc.path}`" if exc.path else "that"
        return f"❓ TokModel couldn't find {what}: {one_line(exc.message)}"
    if isinstance(exc, BadRequest):
        return f"⚠️ TokModel couldn't handle that request: {one_line(exc.message)}"
    if isinstance(exc, StreamBroken):
        return f"⚠️ TokModel's answer broke off half-way. Please try again. {KEPT}"
    if isinstance(exc, Timeout):
        return f"⌛ TokModel took too long to answer. Please try again. {KEPT}"
    if isinstance(exc, ServerError):
        return f"⚠️ TokModel failed (error {exc.status}). Please try again in a moment. {KEPT}"
    if isinstance(exc, ConnectionFailed):
        return f"⚠️ TokModel can't be reached right now. Please try again in a moment. {KEPT}"
    if isinstance(exc, ImageRejected):
        return f"⚠️ TokModel's image can't be posted: {one_line(exc.message)}"
    if isinstance(exc, MalformedResponse):
        return f"⚠️ TokModel sent an answer I couldn't read. Please try again. {KEPT}"
    return f"⚠️ TokModel failed. Please try again. {KEPT}"


def _unknown_model(model: str) -> str:
    return f"❓ TokModel doesn't know the model `{model}`. See `/model` to pick one that exists."


def _in_about(seconds: float | None) -> str:
    if seconds is None:
        return "in a minute"
    whole = max(1, math.ceil(seconds))
    if whole < 90:
        return f"in about {whole} second{'s' if whole != 1 else ''}"
    return f"in about {math.ceil(whole / 60)} minutes"


CUT_OFF_MARK = "\n\n_(answer cut off)_"

"""What a failed Web API call said, read safely.

`SlackApiError.response.get("error")` raises when the answer wasn't Slack's JSON: slack_sdk keeps
a text/plain body (an Envoy or nginx 502 page) as a `str`, a gzip one as `bytes`, and a body
that claims JSON but doesn't parse leaves an aiohttp response in its place (slack_sdk
`web/async_internal_utils.py`, `_request_with_session`). These helpers never raise.
"""

from __future__ import annotations

from slack_sdk.errors import SlackApiError


def error_of(exc: SlackApiError) -> tuple[str, int | None]:
    """The Web API error code ("" for a non-JSON answer) and the HTTP status (if known)."""
    response = exc.response
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return (str(code) if code else ""), (int(status) if isinstance(status, int) else None)


def error_code(exc: SlackApiError) -> str:
    """The Web API error code, or "" when Slack's JSON wasn't what came back."""
    return error_of(exc)[0]


def describe(exc: SlackApiError) -> str:
    """For a log line or a setup message: the error code, else the HTTP status."""
    code, status = error_of(exc)
    if code:
        return code
    return (
        f"HTTP {status if status is not None else '?'}, not a Slack answer: a proxy's error page?"
    )

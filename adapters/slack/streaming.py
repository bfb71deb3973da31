"""Slack's native streaming: an answer as one message Slack renders from standard Markdown,
grown with chat.startStream → chat.appendStream → chat.stopStream
(docs.slack.dev/reference/methods/chat.startStream, …/chat.appendStream, …/chat.stopStream).

- `markdown_text` is limited to 12,000 characters a call: longer appends are sent in parts.
- startStream needs a `thread_ts` ("streamed messages should always be replies"), and in
  channels (not DMs) `recipient_user_id` and `recipient_team_id`.
- Only stopStream takes `blocks` (shown under the finished message); start and append don't.
- A message stopped (or expired: `message_not_in_streaming_state`) can still be replaced with
  chat.update, which is how a stream that broke half-way is finished.

Markdown is Slack's to render, so the mrkdwn escaping of `adapters.slack.mrkdwn` does not apply;
what must still never happen is a ping: `<!here>`, `<!channel>`, `<@U…>`, `<#C…>` written by a
model. Every `<` followed by `!`, `@` or `#` gets a zero-width space after it (invisible; in code
too, e.g. `<!--`), and a `<` at the very end is held back until the next character shows what
follows it (an append can't be taken back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import control_blocks, message_blocks
from adapters.slack.budget import EditBudget
from adapters.slack.errors import error_of
from adapters.slack.translate import to_slack
from bot.domain import AnswerControls

log = logging.getLogger(__name__)

Mode = Literal["native", "update", "auto"]

#: chat.startStream/appendStream/stopStream: "Limit this field to 12,000 characters."
MAX_MARKDOWN = 12_000

#: Errors that say this workspace (or server) can't stream: fall back to chat.update for good.
#: `unknown_method`: "This method is currently not available" (and what a Slack-compatible
#: server without the method says); the others from the methods' documented errors.
REFUSALS = frozenset(
    {"unknown_method", "not_allowed_token_type", "method_deprecated", "deprecated_endpoint"}
)

# The start of a Slack control token: `<` then `!`, `@` or `#`.
_CONTROL = re.compile(r"<(?=[!@#])")
_BREAK = "<\u200b"


def harmless(markdown: str, *, finished: bool) -> str:
    """`markdown` with every control token broken; while not `finished`, minus a last `<`
    (what follows it is not known yet)."""
    text = _CONTROL.sub(_BREAK, markdown)
    return text[:-1] if not finished and text.endswith("<") else text


class StreamingPolicy:
    """Whether answers in a workspace stream natively (per TOKBOT_SLACK_STREAMING). In `auto`, a
    workspace whose Slack refuses the streaming methods falls back to chat.update for the rest
    of the process's life, said once in the log."""

    def __init__(self, mode: Mode = "auto") -> None:
        self.mode: Mode = mode
        self._refused: set[str] = set()

    def native(self, workspace: str) -> bool:
        if self.mode == "update":
            return False
        return self.mode == "native" or workspace not in self._refused

    def refused(self, workspace: str, exc: SlackApiError) -> None:
        """chat.startStream failed: the answer is posted instead; a refusal of the method
        itself (not of this one message) turns streaming off for the workspace."""
        code, status = error_of(exc)
        refusal = code in REFUSALS or (status is not None and 400 <= status < 500 and status != 429)
        if not refusal:
            log.info("Slack: chat.startStream failed (%s); this answer is posted instead", code)
        elif self.mode == "auto" and workspace not in self._refused:
            self._refused.add(workspace)
            log.warning(
                "Slack: workspace %s refuses chat.startStream (%s); its answers stream with "
                "chat.update from now on",
                workspace,
                code or f"HTTP {status}",
            )


class SlackStream:
    """One natively streamed message (`bot.domain.NativeStream`). Gets scrubbed Markdown from the
    renderer, sends it harmless and in parts Slack accepts; if the stream breaks (Slack expires
    long streams: `message_not_in_streaming_state`), the end replaces the message's text with
    chat.update instead."""

    def __init__(
        self, client: AsyncWebClient, channel: str, ts: str, budget: EditBudget | None = None
    ) -> None:
        self._client = client
        self._budget = budget  # the workspace's chat.appendStream budget
        self.channel = channel
        self.message_id = ts
        self._given = ""  # everything the renderer gave
        self._sent = ""  # what Slack was sent: harmless(given) less a held-back `<`
        self._broken = False
        self._alongside: list[asyncio.Future[None]] = []
        self._stopping = asyncio.Event()

    def alongside(self, work: Callable[[], Coroutine[Any, Any, None]], *, after: float = 0) -> None:
        """Run `work()` (the asker's Stop offer) beside the stream rather than before its next
        call (issue 16: it delayed the second text, or the final one, by a Web API call), once
        the stream has gone on for `after` seconds: a stream stopped sooner never runs it (a
        Stop button for an answer already finished is one Web API call for nothing). `stop`
        waits for work begun, so the answer is done only when it is."""
        self._alongside.append(asyncio.ensure_future(self._unless_stopped(work, after)))

    async def _unless_stopped(
        self, work: Callable[[], Coroutine[Any, Any, None]], after: float
    ) -> None:
        if after > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), after)
            if self._stopping.is_set():
                return
        await work()

    @classmethod
    async def start(
        cls,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str,
        markdown: str,
        recipient: tuple[str, str] | None,
        budget: EditBudget | None = None,
    ) -> SlackStream | None:
        """chat.startStream with the first text (raises SlackApiError when refused); None when
        there is nothing to show yet."""
        ready = harmless(markdown, finished=False)
        if not ready:
            return None
        first = ready[:MAX_MARKDOWN]
        user, team = recipient if recipient is not None else (None, None)
        response = await client.chat_startStream(
            channel=channel,
            thread_ts=thread_ts,
            markdown_text=first,
            recipient_user_id=user,
            recipient_team_id=team,
        )
        stream = cls(client, str(response.get("channel") or channel), str(response["ts"]), budget)
        stream._given, stream._sent = markdown, first
        if len(ready) > len(first):
            await stream._catch_up(finished=False)
        return stream

    async def append(self, markdown: str) -> None:
        self._given += markdown
        await self._catch_up(finished=False)

    async def stop(self, markdown: str = "", *, controls: AnswerControls | None = None) -> None:
        """The rest of the text and the final buttons (chat.stopStream's `blocks`, "rendered at
        the bottom of the finalized message")."""
        self._stopping.set()  # work beside the stream not begun by now is not needed
        try:
            await self._stop(markdown, controls)
        finally:
            await self._join_alongside()

    async def _join_alongside(self) -> None:
        work, self._alongside = self._alongside, []
        for outcome in await asyncio.gather(*work, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("Slack: work beside a stream failed (%s)", type(outcome).__name__)

    async def _stop(self, markdown: str, controls: AnswerControls | None) -> None:
        self._given += markdown
        blocks = control_blocks(controls) if controls is not None else None
        whole = harmless(self._given, finished=True)
        if not self._broken:
            rest = whole[len(self._sent) :] if whole.startswith(self._sent) else ""
            try:
                await self._send_parts(rest[:-MAX_MARKDOWN] if len(rest) > MAX_MARKDOWN else "")
                last = rest[-MAX_MARKDOWN:] if rest else ""
                await self._client.chat_stopStream(
                    channel=self.channel, ts=self.message_id, markdown_text=last or None,
                    blocks=blocks,
                )  # fmt: skip
                self._sent = whole
                return
            except SlackApiError as exc:
                log.warning("Slack: a stream broke off (%s); finishing it with chat.update",
                            error_of(exc)[0] or "no error code")  # fmt: skip
        mrkdwn = to_slack(self._given)
        await self._client.chat_update(
            channel=self.channel,
            ts=self.message_id,
            text=mrkdwn,
            blocks=message_blocks(mrkdwn, controls) if controls is not None else None,
        )

    async def _catch_up(self, *, finished: bool) -> None:
        if self._broken:
            return
        ready = harmless(self._given, finished=finished)
        if not ready.startswith(self._sent):
            return  # (cannot happen: harmless() only ever extends) the end shows it all anyway
        try:
            await self._send_parts(ready[len(self._sent) :])
        except SlackApiError as exc:
            code = error_of(exc)[0]
            if code in ("message_not_in_streaming_state", "message_not_found"):
                self._broken = True  # the end replaces the text with chat.update
                return
            raise

    async def _send_parts(self, text: str) -> None:
        for start in range(0, len(text), MAX_MARKDOWN):
            part = text[start : start + MAX_MARKDOWN]
            if self._budget is not None:
                await self._budget.take()  # busy workspace: wait rather than be refused
            await self._client.chat_appendStream(
                channel=self.channel, ts=self.message_id, markdown_text=part
            )
            self._sent += part

"""Slack's assistant pane (the split view of an app with `assistant_view`) and thinking status.

Shapes from Slack's docs: the events `assistant_thread_started` and
`assistant_thread_context_changed` carry `assistant_thread: {user_id, channel_id (the DM),
thread_ts, context: {channel_id (what the person is viewing), team_id, enterprise_id}}`
(docs.slack.dev/reference/events/assistant_thread_started); the methods
`assistant.threads.setSuggestedPrompts` (channel_id, thread_ts, prompts: [{title, message}],
title), `assistant.threads.setTitle` (channel_id, thread_ts, title) and
`assistant.threads.setStatus` (channel_id, thread_ts, status, loading_messages: up to 10;
"automatically cleared when the app sends a reply", an empty status clears it, and it times
out after two minutes without a message).

The channel being viewed is kept in memory only, and that is enough: it chooses the suggested
prompts and nothing else, and Slack repeats it in every `assistant_thread_context_changed`. A
message event in the thread does not carry it (which is why bolt's `Assistant` keeps a context
store, recovering it from the first reply's metadata through conversations.replies), so after a
restart the first context change re-sends the prompts even when the channel is the same: one
extra call, not worth a rate-limited read or a table.

bolt's `Assistant` middleware is not used: its default context store rewrites the first reply's
metadata with chat.update (calls, and the workspace's edit budget, for something kept here in
memory), and it would take DM thread messages away from the listener that answers DMs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.errors import error_of

log = logging.getLogger(__name__)

GREETING = (
    "Hi! I'm tokbot. Ask me anything here — I'll remember this conversation. "
    "Pick a suggestion below or type your question."
)
THINKING = "is thinking…"
LOADING_MESSAGES = ["Reading your question…", "Thinking it over…", "Writing the answer…"]
PROMPTS_TITLE = "Try asking"
#: Slack shows a thread's title in the pane's history; long questions are cut to this.
TITLE_LENGTH = 60
#: Threads whose viewed channel is remembered (the pane's context); the oldest are forgotten.
MAX_CONTEXTS = 10_000


@dataclass(frozen=True)
class PaneThread:
    """An assistant thread: the DM channel and thread, who opened it, and the channel they view
    ("" when none, or one the bot may not know)."""

    channel: str
    thread_ts: str
    user: str
    viewing: str = ""


def pane_thread(event: Mapping[str, Any]) -> PaneThread | None:
    """The thread an assistant event is about, or None when the event is malformed."""
    thread = event.get("assistant_thread")
    if not isinstance(thread, Mapping):
        return None
    channel, ts = thread.get("channel_id"), thread.get("thread_ts")
    if not isinstance(channel, str) or not channel or not isinstance(ts, str) or not ts:
        return None
    context = thread.get("context")
    viewing = context.get("channel_id") if isinstance(context, Mapping) else None
    user = thread.get("user_id")
    return PaneThread(
        channel,
        ts,
        user if isinstance(user, str) else "",
        viewing if isinstance(viewing, str) and viewing[:1] in ("C", "G") else "",
    )


def suggested_prompts(viewing: str) -> list[dict[str, str]]:
    """3–4 prompts; about the channel the person views when there is one."""
    if viewing:
        where = f"<#{viewing}>"
        return [
            {
                "title": "Draft a post for this channel",
                "message": f"Help me write a short, friendly update to post in {where}.",
            },
            {
                "title": "Plan a discussion",
                "message": f"Suggest an agenda for a 15-minute discussion in {where}.",
            },
            {
                "title": "Explain something",
                "message": "Explain, in plain words, a term people use here: ",
            },
        ]
    return [
        {"title": "Explain a concept", "message": "Explain, in plain words and briefly: "},
        {"title": "Draft a message", "message": "Help me write a short, clear message about: "},
        {"title": "Summarise text", "message": "Summarise this in three bullet points: "},
        {"title": "Brainstorm", "message": "Give me five ideas for: "},
    ]


def title_of(question: str) -> str:
    """A thread title from its first question: the first line, cut at a word."""
    line = " ".join(question.strip().split("\n", 1)[0].split())
    if len(line) <= TITLE_LENGTH:
        return line or "New chat"
    cut = line[: TITLE_LENGTH - 1].rsplit(" ", 1)[0]
    return (cut or line[: TITLE_LENGTH - 1]) + "…"


class Pane:
    """Greets each new assistant thread and keeps its suggested prompts about the channel the
    person views. Calls that fail are logged and skipped: the pane works without them."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._viewing: dict[tuple[str, str], str] = {}

    async def started(self, thread: PaneThread) -> None:
        self._remember(thread)
        await _quietly(
            "greeting",
            self._client.chat_postMessage(
                channel=thread.channel, thread_ts=thread.thread_ts, text=GREETING
            ),
        )
        await self._prompts(thread)

    async def context_changed(self, thread: PaneThread) -> None:
        if self._viewing.get((thread.channel, thread.thread_ts)) == thread.viewing:
            return  # the same channel: the prompts already fit
        self._remember(thread)
        await self._prompts(thread)

    async def title(self, channel: str, thread_ts: str, question: str) -> None:
        await _quietly(
            "title",
            self._client.assistant_threads_setTitle(
                channel_id=channel, thread_ts=thread_ts, title=title_of(question)
            ),
        )

    def _remember(self, thread: PaneThread) -> None:
        if len(self._viewing) >= MAX_CONTEXTS:
            self._viewing.pop(next(iter(self._viewing)))
        self._viewing[(thread.channel, thread.thread_ts)] = thread.viewing

    async def _prompts(self, thread: PaneThread) -> None:
        await _quietly(
            "suggested prompts",
            self._client.assistant_threads_setSuggestedPrompts(
                channel_id=thread.channel,
                thread_ts=thread.thread_ts,
                title=PROMPTS_TITLE,
                prompts=suggested_prompts(thread.viewing),
            ),
        )


async def set_status(client: AsyncWebClient, channel: str, thread_ts: str, status: str) -> bool:
    """Show (or with "" clear) the thinking status under a DM thread; False when Slack refused
    it (a DM that is no assistant thread, or the scope is missing): the answer goes on."""
    loading = LOADING_MESSAGES if status else None
    return await _quietly(
        "status",
        client.assistant_threads_setStatus(
            channel_id=channel, thread_ts=thread_ts, status=status, loading_messages=loading
        ),
    )


async def _quietly(what: str, call: Awaitable[Any]) -> bool:
    try:
        await call
    except SlackApiError as exc:
        log.info("Slack: could not set the assistant %s (%s)", what, error_of(exc)[0])
        return False
    return True

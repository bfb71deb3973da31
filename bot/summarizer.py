"""Summaries from TokModel, of any length of text: `/v1/responses/compact` where the gateway
serves it (it answers plain text), a chat completion where it does not (found out once, then
remembered), and text longer than the context budget summarized in parts, then together."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bot.conversation import estimate_tokens, turn_to_message
from bot.domain import Turn, TurnRole
from bot.tokmodel.client import TokModelClient
from bot.tokmodel.errors import NotFound
from bot.tokmodel.types import ChatMessage, Usage

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Summarize this team chat for someone who was not there. Keep every decision, number, "
    "date, name, deadline and open question, with who said it; leave out greetings and "
    "chatter. Write plain sentences, no preamble."
)
#: Parts summarized separately, then together, at most this many times over (each round
#: shrinks the text at least by half; see `Summarizer.summarize`).
MAX_ROUNDS = 8


@dataclass(frozen=True)
class Summary:
    text: str
    #: Tokens of every request made for it (TokModel's figures, or estimated where it gave none).
    usage: Usage
    #: How many requests it took.
    requests: int


class Summarizer:
    """Summarizes lines of text within a context budget (tokens, estimated as `bot.conversation`
    does), through one TokModel client."""

    def __init__(self, tokmodel: TokModelClient, *, budget_tokens: int) -> None:
        self._tokmodel = tokmodel
        #: What one summary may be: a quarter of the budget, so parts always merge.
        self.output_tokens = max(64, budget_tokens // 4)
        #: What one request may send.
        self._input_tokens = max(
            128, budget_tokens - self.output_tokens - estimate_tokens(INSTRUCTIONS)
        )
        #: Whether the gateway serves /v1/responses/compact (None: not asked yet).
        self.has_compact: bool | None = None

    async def summarize(self, lines: Sequence[str], *, model: str) -> Summary:
        """One summary of `lines` (oldest first). Lines that do not fit one request are
        summarized in parts, and the parts' summaries together, until one is left."""
        usage, requests = Usage(), 0
        parts = self._parts(lines)
        for _ in range(MAX_ROUNDS):
            summaries = []
            for part in parts:
                text, used = await self._ask("\n".join(part), model)
                summaries.append(text)
                usage = _add(usage, used)
                requests += 1
            if len(summaries) == 1:
                return Summary(summaries[0], usage, requests)
            parts = self._parts(summaries)
        return Summary("\n".join(s for part in parts for s in part), usage, requests)

    def _parts(self, lines: Sequence[str]) -> list[list[str]]:
        """`lines` in consecutive groups that each fit one request (a longer line is cut)."""
        parts: list[list[str]] = [[]]
        room = self._input_tokens
        for line in lines:
            line = line[: self._input_tokens * 4 - 4]
            cost = estimate_tokens(line)
            if parts[-1] and cost > room:
                parts.append([])
                room = self._input_tokens
            parts[-1].append(line)
            room -= cost
        return parts

    async def _ask(self, text: str, model: str) -> tuple[str, Usage]:
        first_try = self.has_compact is None
        if self.has_compact is not False:
            try:
                answer = await self._tokmodel.compact(
                    text,
                    model=model,
                    instructions=INSTRUCTIONS,
                    max_output_tokens=self.output_tokens,
                )
            except NotFound:
                if not first_try:
                    raise  # it was served before: this 404 is about something else
            else:
                self.has_compact = True
                return answer, _estimated(text, answer)
        messages = [ChatMessage("system", INSTRUCTIONS), ChatMessage("user", text)]
        result = await self._tokmodel.chat(messages, model, max_tokens=self.output_tokens)
        if first_try:  # (a 404 from chat too, e.g. an unknown model, decides nothing)
            log.info("TokModel has no /v1/responses/compact here; summarizing by chat")
            self.has_compact = False
        return result.text.strip(), result.usage or _estimated(text, result.text)


def _estimated(prompt: str, answer: str) -> Usage:
    # /v1/responses/compact answers only text: its usage is estimated, as streamed answers are.
    asked, answered = estimate_tokens(INSTRUCTIONS + prompt), estimate_tokens(answer)
    return Usage(asked, answered, asked + answered)


def turn_line(turn: Turn) -> str:
    """A turn as one line of a transcript to summarize: "Name: text"."""
    if turn.role is TurnRole.ASSISTANT:
        return f"{turn.author_name}: {turn.content}"
    return turn_to_message(turn).content


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        a.prompt_tokens + b.prompt_tokens,
        a.completion_tokens + b.completion_tokens,
        a.total_tokens + b.total_tokens,
    )

"""Which history goes into a chat request: the persona, then the newest turns within a budget."""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain import Turn, TurnKind, TurnRole, TurnStatus
from bot.tokmodel.types import ChatMessage

DEFAULT_PERSONA = (
    "You are tokbot, a helpful assistant in a team chat. Several people may talk to you; "
    "each user message starts with the speaker's name. Answer concisely."
)

# Turns that carry meaning for the model; failed requests and answers in flight do not.
_CONTEXT_STATUSES = frozenset({TurnStatus.OK, TurnStatus.INTERRUPTED, TurnStatus.STOPPED})


def estimate_tokens(text: str) -> int:
    """A network-free estimate (about four characters a token), good enough for budgeting."""
    return len(text) // 4 + 1


def turn_to_message(turn: Turn) -> ChatMessage:
    if turn.role is TurnRole.ASSISTANT:
        content = turn.content
        if turn.status is TurnStatus.INTERRUPTED:
            content += " [this answer was cut off]"
        elif turn.status is TurnStatus.STOPPED:
            content += " [the asker stopped this answer here]"
        return ChatMessage("assistant", content)
    if turn.kind is TurnKind.TRANSCRIPT:
        return ChatMessage("user", f"{turn.author_name} (voice message): {turn.content}")
    return ChatMessage("user", f"{turn.author_name}: {turn.content}")


def build_context(
    persona: str | None, turns: Sequence[Turn], *, budget_tokens: int
) -> list[ChatMessage]:
    """System prompt, then as many of the newest usable turns as fit in `budget_tokens`.

    `turns` are oldest first. The newest turn is always kept, even alone over budget, so the
    question being asked is never dropped.
    """
    system = ChatMessage("system", persona or DEFAULT_PERSONA)
    remaining = budget_tokens - estimate_tokens(system.content)
    picked: list[ChatMessage] = []
    for turn in reversed(turns):
        if turn.status not in _CONTEXT_STATUSES or not turn.content.strip():
            continue
        message = turn_to_message(turn)
        cost = estimate_tokens(message.content)
        if picked and cost > remaining:
            break
        picked.append(message)
        remaining -= cost
    picked.reverse()
    # Some models reject a conversation that opens with an assistant message.
    while picked and picked[0].role == "assistant":
        picked.pop(0)
    return [system, *picked]


#: Turns read in the first page of history; each further page doubles, up to MAX_CONTEXT_TURNS.
FIRST_PAGE = 32
MAX_CONTEXT_TURNS = 512


def fills_budget(turns: Sequence[Turn], budget_tokens: int) -> bool:
    """Whether `turns` already hold at least a budget's worth of text (no need to read more)."""
    return sum(estimate_tokens(t.content) for t in turns) >= budget_tokens

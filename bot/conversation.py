"""Which history goes into a chat request: the persona, then the newest turns within a budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.domain import Turn, TurnKind, TurnRole, TurnStatus
from bot.tokmodel.types import ChatImage, ChatMessage

#: What a picture costs in the context budget, whatever its size: OpenAI's price of a
#: 1024×1024 picture at high detail (85 tokens + 4 tiles × 170). Bigger ones are scaled down
#: to about that by the models; smaller ones cost less, so this errs on the safe side.
IMAGE_TOKENS = 765

if TYPE_CHECKING:
    from bot.store.summaries import StoredSummary

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


@dataclass(frozen=True)
class AttachedPicture:
    """A picture of a turn, as its message shows it: sent (`image`), or named only."""

    filename: str
    image: ChatImage | None = None
    #: Its bytes are no longer kept (the cache dropped them), so it cannot be sent again.
    gone: bool = False


def message_cost(message: ChatMessage) -> int:
    """Estimated tokens of a message, its pictures at IMAGE_TOKENS each."""
    return estimate_tokens(message.content) + IMAGE_TOKENS * len(message.images)


def _with_pictures(message: ChatMessage, pictures: Sequence[AttachedPicture]) -> ChatMessage:
    """The message with its pictures: the ones at hand as content parts, the others named in
    the text, so the model knows they existed (never their bytes in the text)."""
    notes = []
    for picture in pictures:
        if picture.image is not None:
            notes.append(f"[picture: {picture.filename}]")
        elif picture.gone:
            notes.append(f"[picture {picture.filename}: no longer kept, so not shown again]")
        else:
            notes.append(f"[picture {picture.filename}: shown earlier, not sent again]")
    images = tuple(p.image for p in pictures if p.image is not None)
    return ChatMessage(message.role, " ".join([message.content, *notes]), images)


#: Introduces a folded conversation's summary in the system prompt.
SUMMARY_INTRO = "\n\nWhat was said in this conversation before the messages below, in brief: "


def usable_turns(turns: Sequence[Turn], summary: StoredSummary | None = None) -> list[Turn]:
    """The turns that carry meaning for the model and are not folded into `summary` (a turn
    not stored yet, id 0, is the question being asked: always kept)."""
    covered = summary.covers_turn_id if summary is not None else 0
    return [
        turn
        for turn in turns
        if turn.status in _CONTEXT_STATUSES
        and turn.kind is not TurnKind.SUMMARY
        and turn.content.strip()
        and not 0 < turn.id <= covered
    ]


def build_context(
    persona: str | None,
    turns: Sequence[Turn],
    *,
    budget_tokens: int,
    pictures: Mapping[int, Sequence[AttachedPicture]] | None = None,
    summary: StoredSummary | None = None,
) -> list[ChatMessage]:
    """System prompt (with the conversation's running summary, when it has one), then as many
    of the newest usable turns after the summary as fit in `budget_tokens`.

    `turns` are oldest first. The newest turn is always kept, even alone over budget, so the
    question being asked is never dropped, with its pictures. `pictures` (by turn id) are sent
    with their turns while they fit; an older turn whose pictures do not is sent with them
    named only.
    """
    system_text = persona or DEFAULT_PERSONA
    if summary is not None:
        system_text += SUMMARY_INTRO + summary.turn.content
    system = ChatMessage("system", system_text)
    remaining = budget_tokens - estimate_tokens(system.content)
    picked: list[ChatMessage] = []
    for turn in reversed(usable_turns(turns, summary)):
        message = plain = turn_to_message(turn)
        attached = (pictures or {}).get(turn.id, ())
        if attached:
            message = _with_pictures(plain, attached)
            if picked and message_cost(message) > remaining:
                message = _with_pictures(plain, [_unsent(p) for p in attached])
        cost = message_cost(message)
        if picked and cost > remaining:
            break
        picked.append(message)
        remaining -= cost
    picked.reverse()
    # Some models reject a conversation that opens with an assistant message.
    while picked and picked[0].role == "assistant":
        picked.pop(0)
    return [system, *picked]


def _unsent(picture: AttachedPicture) -> AttachedPicture:
    return AttachedPicture(picture.filename, None, picture.gone)


#: Turns read in the first page of history; each further page doubles, up to MAX_CONTEXT_TURNS.
FIRST_PAGE = 32
MAX_CONTEXT_TURNS = 512


def fills_budget(turns: Sequence[Turn], budget_tokens: int) -> bool:
    """Whether `turns` already hold at least a budget's worth of text (no need to read more)."""
    return sum(estimate_tokens(t.content) for t in turns) >= budget_tokens

"""Block Kit for an answer's buttons: Stop while it streams, 👍/👎 once it is finished.

Shapes from Slack's Block Kit reference (docs.slack.dev/reference/block-kit/…) and slack_sdk
3.48's models: `context_actions` (blocks/context-actions-block: up to 5 `feedback_buttons` or
`icon_button` elements) holding a `feedback_buttons` element (block-elements/
feedback-buttons-element: `positive_button` / `negative_button`, each `{text: plain_text (≤ 75),
value (≤ 2000), accessibility_label}`); a Stop `button` in an `actions` block; `section` text of
at most 3,000 characters. Once a message has blocks, Slack shows them instead of its `text`
(which stays the notification fallback), so the text is repeated as sections.

Action ids and values (shared with Discord's custom ids, see the controls interface):
`tokbot_feedback` with `positive:<turn_id>` / `negative:<turn_id>`, `tokbot_stop` with `<turn_id>`.
"""

from __future__ import annotations

from typing import Any

from bot.domain import AnswerControls, FeedbackValue
from bot.text import split_message

FEEDBACK_ACTION = "tokbot_feedback"
STOP_ACTION = "tokbot_stop"
#: A section block's text limit.
MAX_SECTION = 3000

Block = dict[str, Any]


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def feedback_blocks(turn_id: int) -> list[Block]:
    def button(value: FeedbackValue, face: str, label: str) -> dict[str, Any]:
        return {"text": _plain(face), "value": f"{value}:{turn_id}", "accessibility_label": label}

    return [
        {
            "type": "context_actions",
            "elements": [
                {
                    "type": "feedback_buttons",
                    "action_id": FEEDBACK_ACTION,
                    "positive_button": button(FeedbackValue.POSITIVE, "👍", "Good answer"),
                    "negative_button": button(FeedbackValue.NEGATIVE, "👎", "Bad answer"),
                }
            ],
        }
    ]


def stop_blocks(turn_id: int) -> list[Block]:
    return [
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": STOP_ACTION,
                    "text": _plain("⏹ Stop"),
                    "value": str(turn_id),
                    "style": "danger",
                }
            ],
        }
    ]


def control_blocks(controls: AnswerControls) -> list[Block]:
    return (
        stop_blocks(controls.turn_id) if controls.streaming else feedback_blocks(controls.turn_id)
    )


def message_blocks(mrkdwn: str, controls: AnswerControls | None) -> list[Block]:
    """A message's text as sections (≤ 3,000 characters each, code blocks closed and reopened
    across them), then its buttons."""
    sections: list[Block] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": part}}
        for part in split_message(mrkdwn, MAX_SECTION)
        if part.strip()
    ]
    return sections + (control_blocks(controls) if controls is not None else [])


def parse_feedback(value: str) -> tuple[FeedbackValue, int] | None:
    """`positive:12` → (POSITIVE, 12); None for anything else."""
    kind, _, turn = value.partition(":")
    if kind not in (FeedbackValue.POSITIVE, FeedbackValue.NEGATIVE) or not turn.isdigit():
        return None
    return FeedbackValue(kind), int(turn)


def parse_stop(value: str) -> int | None:
    return int(value) if value.isdigit() else None

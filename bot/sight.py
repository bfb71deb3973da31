"""Which chat models can't look at pictures, learnt from their refusals, for the process's life.

A model that refused a question with pictures is not asked with pictures again: the next such
question goes straight to TOKBOT_VISION_MODEL. Only a refusal that says so counts: a 400 about
something else (a picture too large, a bad field) is an error like any other.
"""

from __future__ import annotations

import logging
import re

from bot.tokmodel.errors import BadRequest, NotFound, TokModelError
from bot.tokmodel.types import ChatMessage

log = logging.getLogger(__name__)

#: How gateways say a model takes no pictures: OpenAI (400 "Invalid content type. image_url is
#: only supported by certain models."), Ollama (400 "this model does not support image input"),
#: OpenRouter (404 "No endpoints found that support image input"), vLLM ("… is not a
#: multimodal model"). tokmodel-api.md §15 says a model without sight answers 400.
_CANT_SEE = re.compile(
    r"only supported by certain models"
    r"|(?:does not|doesn't|do not|don't|not) supports? (?:images?|image input|vision|multi-?modal)"
    r"|support image input"
    r"|not an? (?:multi-?modal|vision) model"
    r"|(?:image|vision|multi-?modal) (?:input|content)s? (?:is|are) not supported",
    re.IGNORECASE,
)


def says_no_sight(exc: TokModelError) -> bool:
    """Whether TokModel's error says the model takes no pictures."""
    return isinstance(exc, BadRequest | NotFound) and bool(_CANT_SEE.search(exc.message))


def has_pictures(messages: list[ChatMessage]) -> bool:
    return any(m.images for m in messages)


class Sight:
    """The models that refused pictures in this process, and where pictures go instead."""

    def __init__(self, vision_model: str) -> None:
        self.vision_model = vision_model
        self._blind: set[str] = set()

    def known_blind(self, model: str) -> bool:
        return model in self._blind and model != self.vision_model

    def refused(self, model: str, messages: list[ChatMessage], exc: TokModelError) -> bool:
        """Whether `exc` was `model` refusing the pictures in `messages` (remembered, so the
        next question with pictures skips it); False when the vision model itself was asked."""
        if model == self.vision_model or not has_pictures(messages) or not says_no_sight(exc):
            return False
        if model not in self._blind:
            log.info("%s can't look at pictures (%s); they go to %s", model, exc, self.vision_model)
        self._blind.add(model)
        return True

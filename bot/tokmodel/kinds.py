"""What a model is for (chat, image, speech, …), from the model list.

TokModel's model objects carry no type or capability (tokmodel-api.md §3: "nothing in it tells
chat, embedding, rerank, image or TTS models apart"), so the id decides, by the names providers
give their non-chat families. Gateways that do say it are believed: Together and others send
`type`, LiteLLM's model info sends `mode`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

CHAT: Final = "chat"

#: A gateway's own word for the kind -> ours.
_DECLARED: Final[dict[str, str]] = {
    "chat": CHAT,
    "language": CHAT,
    "code": CHAT,
    "completion": CHAT,
    "image": "image",
    "image_generation": "image",
    "embedding": "embedding",
    "embeddings": "embedding",
    "rerank": "rerank",
    "audio_speech": "speech",
    "tts": "speech",
    "audio_transcription": "transcription",
    "transcribe": "transcription",
    "moderation": "moderation",
}

#: Name patterns of non-chat families, checked in order on the id (without the provider).
_BY_NAME: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("rerank", re.compile(r"rerank")),
    ("embedding", re.compile(r"embed")),
    ("transcription", re.compile(r"whisper|transcribe|(^|[-_.])stt([-_.]|$)")),
    ("speech", re.compile(r"(^|[-_.])tts([-_.]|$)|text-to-speech")),
    (
        "image",
        re.compile(r"dall-e|gpt-image|imagen|stable-diffusion|sdxl|(^|[-_.])flux([-_.]|$)"),
    ),
    ("moderation", re.compile(r"moderation|llama-guard")),
)

#: How a kind is named in a sentence ("… is an image model").
KIND_NAMES: Final[dict[str, str]] = {
    "image": "an image",
    "speech": "a text-to-speech",
    "transcription": "a transcription",
    "embedding": "an embedding",
    "rerank": "a rerank",
    "moderation": "a moderation",
    CHAT: "a chat",
}


def model_kind(model_id: str, declared: str | None = None) -> str:
    """One of chat, image, speech, transcription, embedding, rerank, moderation."""
    if declared is not None and declared.lower() in _DECLARED:
        return _DECLARED[declared.lower()]
    name = model_id.rsplit("/", 1)[-1].lower()
    for kind, pattern in _BY_NAME:
        if pattern.search(name):
            return kind
    return CHAT


def takes_images(item: Mapping[str, Any]) -> bool | None:
    """Whether a model-list entry says the model takes pictures; None when it says nothing.
    Believed: OpenRouter's `architecture.input_modalities` (and the same list at the top
    level), LiteLLM's `supports_vision` (also inside `model_info`)."""
    architecture = item.get("architecture")
    for holder in (architecture if isinstance(architecture, Mapping) else {}, item):
        modalities = holder.get("input_modalities")
        if isinstance(modalities, list):
            return "image" in modalities
    info = item.get("model_info")
    for holder in (item, info if isinstance(info, Mapping) else {}):
        supports = holder.get("supports_vision")
        if isinstance(supports, bool):
            return supports
    return None

"""Typed results of the TokModel client (frozen, so they can be shared freely)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.tokmodel.images import extension_for

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    usage: Usage | None
    finish_reason: str | None = None


@dataclass(frozen=True)
class ChatDelta:
    """One piece of a streamed answer: new text, and usage/finish when the stream says so."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    id: str
    owned_by: str | None = None
    created: int | None = None
    kind: str = "chat"  # see bot.tokmodel.kinds

    @property
    def is_chat(self) -> bool:
        return self.kind == "chat"


@dataclass(frozen=True)
class GeneratedImage:
    png: bytes  # the image's bytes: PNG as asked for, or JPEG/WebP/GIF from some gateways
    revised_prompt: str | None = None
    content_type: str = "image/png"

    @property
    def extension(self) -> str:
        return extension_for(self.content_type)


@dataclass(frozen=True)
class RerankResult:
    index: int
    relevance_score: float
    document: str | None = None

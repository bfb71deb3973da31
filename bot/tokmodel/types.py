"""Typed results of the TokModel client (frozen, so they can be shared freely)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Literal

from bot.tokmodel.images import extension_for

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatImage:
    """A picture sent to a chat model: its bytes and MIME type (PNG, JPEG, WebP or GIF)."""

    mime: str
    data: bytes = field(repr=False)

    @property
    def data_url(self) -> str:
        """The picture as OpenAI's `image_url` takes it inline (a base64 `data:` URL)."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass(frozen=True)
class ChatMessage:
    """One chat message. With `images`, it is sent as OpenAI content parts: the text, then one
    `image_url` part per picture."""

    role: Role
    content: str
    images: tuple[ChatImage, ...] = ()


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
    #: Whether it takes pictures, when the model list says (TokModel's documented model
    #: object does not: None).
    takes_images: bool | None = None

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


@dataclass(frozen=True)
class Embedded:
    """`/v1/embeddings`' answer: one vector per input, in input order, and the usage it
    reported (None when it reported none)."""

    vectors: list[list[float]]
    usage: Usage | None

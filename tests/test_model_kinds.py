"""Which models are chat models: by a gateway's own word when it gives one, else by the id."""

from __future__ import annotations

import pytest

from bot.tokmodel.fake import MODELS
from bot.tokmodel.kinds import model_kind


@pytest.mark.parametrize(
    ("model_id", "kind"),
    [
        ("openai/gpt-4o-mini", "chat"),
        ("anthropic/claude-opus-4-5", "chat"),
        ("meta-llama/llama-3.3-70b-instruct", "chat"),
        ("openai/o3-mini", "chat"),
        ("openai/dall-e-3", "image"),
        ("openai/gpt-image-1", "image"),
        ("black-forest-labs/flux-1.1-pro", "image"),
        ("openai/tts-1-hd", "speech"),
        ("openai/gpt-4o-mini-tts", "speech"),
        ("openai/whisper-1", "transcription"),
        ("openai/gpt-4o-transcribe", "transcription"),
        ("openai/text-embedding-3-small", "embedding"),
        ("cohere/embed-english-v3.0", "embedding"),
        ("cohere/rerank-english-v3.0", "rerank"),
        ("openai/omni-moderation-latest", "moderation"),
        ("whisper-1", "transcription"),  # ids without a provider prefix too
    ],
)
def test_kind_by_id(model_id: str, kind: str) -> None:
    assert model_kind(model_id) == kind


def test_a_declared_kind_wins() -> None:
    assert model_kind("acme/mystery", "embedding") == "embedding"
    assert model_kind("acme/mystery", "image_generation") == "image"
    assert model_kind("openai/gpt-4o", "unheard-of") == "chat"


def test_the_stand_ins_list_has_six_chat_models() -> None:
    assert sum(model_kind(m) == "chat" for m, _ in MODELS) == 6

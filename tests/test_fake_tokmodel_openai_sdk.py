"""The TokModel stand-in accepts what the official `openai` SDK sends and answers shapes it can
parse (issue 11, item 20). The SDK talks to the stand-in over loopback like any real client."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator

import openai
import pytest
from openai import AsyncOpenAI

from bot.tokmodel import fake_media
from bot.tokmodel.fake import EMBEDDING_DIMENSIONS, FakeTokModel, Fault
from bot.tokmodel.fake_vision import solid_png
from bot.tokmodel.types import ChatImage

KEY = "sk-sdk-test-0042"
CHAT = "openai/gpt-4o"

DOT = solid_png(2, 2, (220, 30, 30))


@pytest.fixture
async def fake() -> AsyncIterator[FakeTokModel]:
    async with FakeTokModel(api_key=KEY) as server:
        yield server


@pytest.fixture
async def sdk(fake: FakeTokModel) -> AsyncIterator[AsyncOpenAI]:
    # As TokModel's gateway page shows it: the SDK's base_url is the gateway's /v1.
    async with AsyncOpenAI(base_url=fake.url + "/v1", api_key=KEY, max_retries=0) as client:
        yield client


async def test_chat_with_content_parts_developer_role_and_max_completion_tokens(
    sdk: AsyncOpenAI, fake: FakeTokModel
) -> None:
    answer = await sdk.chat.completions.create(
        model=CHAT,
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": ChatImage("image/png", DOT).data_url},
                    },
                ],
            },
        ],
        max_completion_tokens=200,
    )
    text = answer.choices[0].message.content
    assert text is not None and "What is in this picture?" in text and "Be brief." in text
    assert "I see 1 picture(s): a 2×2 PNG, mostly red" in text
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    sent = fake.requests[-1].json
    assert sent is not None and sent["max_completion_tokens"] == 200


async def test_max_completion_tokens_stops_the_answer(sdk: AsyncOpenAI) -> None:
    answer = await sdk.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "hi"}], max_completion_tokens=2
    )
    assert answer.choices[0].finish_reason == "length"


async def test_stream_with_usage(sdk: AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Stream, please"}]}],
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, usage = [], None
    async for chunk in stream:
        if chunk.choices:
            texts.append(chunk.choices[0].delta.content or "")
            assert chunk.usage is None
        else:
            usage = chunk.usage
    assert "Stream, please" in "".join(texts)
    assert usage is not None and usage.total_tokens > 0


async def test_images_generate_edit_with_image_array_and_vary(
    sdk: AsyncOpenAI, fake: FakeTokModel
) -> None:
    made = await sdk.images.generate(
        model="openai/dall-e-3", prompt="a fox", size="256x256", response_format="b64_json"
    )
    assert made.data and made.data[0].b64_json
    png = fake_media.png_image(64, 64, "src")
    # A list of images is sent as multipart `image[]` parts (openai-python's extract_files).
    edited = await sdk.images.edit(
        model="openai/dall-e-3",
        image=[("a.png", png, "image/png")],
        prompt="add a hat",
        size="256x256",
        response_format="b64_json",
    )
    assert edited.data and edited.data[0].b64_json
    assert "image[]" in fake.requests[-1].files
    with warnings.catch_warnings():  # newer SDKs mark variations deprecated; still served
        warnings.simplefilter("ignore", DeprecationWarning)
        varied = await sdk.images.create_variation(
            model="openai/dall-e-3", image=("a.png", png, "image/png"), size="256x256"
        )
    assert varied.data and varied.data[0].url


async def test_speech(sdk: AsyncOpenAI) -> None:
    speech = await sdk.audio.speech.create(
        model="openai/tts-1", voice="alloy", input="hello", response_format="wav"
    )
    assert (await speech.aread()).startswith(b"RIFF")


async def test_transcription_in_every_format(sdk: AsyncOpenAI) -> None:
    audio = ("clip.wav", fake_media.wav_audio(1.0), "audio/wav")
    model = "openai/whisper-1"
    plain = await sdk.audio.transcriptions.create(model=model, file=audio)
    assert "clip.wav" in plain.text
    verbose = await sdk.audio.transcriptions.create(
        model=model, file=audio, response_format="verbose_json"
    )
    assert verbose.text == plain.text and verbose.duration > 0 and verbose.language
    assert verbose.segments and verbose.segments[0].text == plain.text
    text = await sdk.audio.transcriptions.create(model=model, file=audio, response_format="text")
    assert text.strip() == plain.text
    srt = await sdk.audio.transcriptions.create(model=model, file=audio, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and plain.text in srt
    vtt = await sdk.audio.transcriptions.create(model=model, file=audio, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:0") and plain.text in vtt
    with warnings.catch_warnings():  # as for variations
        warnings.simplefilter("ignore", DeprecationWarning)
        english = await sdk.audio.translations.create(
            model=model, file=audio, response_format="verbose_json"
        )
    assert "English translation" in english.text


async def test_embeddings_dimensions_base64_and_token_arrays(sdk: AsyncOpenAI) -> None:
    model = "openai/text-embedding-3-small"
    # The SDK asks for base64 unless told otherwise, and decodes it.
    full = await sdk.embeddings.create(model=model, input=["a", "b"])
    assert [len(d.embedding) for d in full.data] == [EMBEDDING_DIMENSIONS] * 2
    short = await sdk.embeddings.create(model=model, input="a", dimensions=8)
    assert len(short.data[0].embedding) == 8
    assert abs(sum(v * v for v in short.data[0].embedding) - 1.0) < 1e-3
    tokens = await sdk.embeddings.create(model=model, input=[[1, 2, 3], [4]])
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 4
    one = await sdk.embeddings.create(model=model, input=[5, 6])
    assert len(one.data) == 1


async def test_models_list_and_retrieve(sdk: AsyncOpenAI) -> None:
    ids = [m.id async for m in sdk.models.list()]
    assert CHAT in ids
    assert (await sdk.models.retrieve(CHAT)).id == CHAT
    with pytest.raises(openai.NotFoundError):
        await sdk.models.retrieve("nobody/nothing")


async def test_v1beta_model_by_id(fake: FakeTokModel) -> None:
    beta = AsyncOpenAI(base_url=fake.url + "/v1beta", api_key=KEY, max_retries=0)
    async with beta:
        assert (await beta.models.retrieve("openai/whisper-1")).owned_by == "openai"


async def test_the_malformed_fault_is_seen_by_the_sdk(sdk: AsyncOpenAI, fake: FakeTokModel) -> None:
    """Non-streamed: a body that is not JSON; streamed: an event that is not JSON. Either way
    the SDK raises, rather than reading an empty answer."""
    fake.fail(Fault(malformed=True))
    with pytest.raises((openai.APIError, json.JSONDecodeError)):
        await sdk.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "x"}])
    fake.fail(Fault(malformed=True))
    with pytest.raises((openai.APIError, json.JSONDecodeError)):
        stream = await sdk.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "x"}], stream=True
        )
        async for _ in stream:
            pass

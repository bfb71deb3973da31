"""TokModelClient against real servers over loopback: the fake TokModel, plus tiny ad-hoc aiohttp
apps for answer shapes the fake never produces (bare model arrays, URL-only images, plain-text
transcripts, string rerank documents, usage chunks in a stream).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.tokmodel import (
    BadRequest,
    ChatDelta,
    ChatMessage,
    ConnectionFailed,
    InsufficientCredits,
    MalformedResponse,
    NotFound,
    RateLimited,
    ServerError,
    StreamBroken,
    Timeout,
    TokModelClient,
    TokModelError,
    Unauthorized,
    fake_media,
)
from bot.tokmodel.errors import parse_retry_after
from bot.tokmodel.fake import (
    EMBEDDING_DIMENSIONS,
    FakeTokModel,
    Fault,
    stand_in_reply,
    stand_in_transcript,
)
from bot.tokmodel.sse import SSEDecoder

KEY = "sk-tokbot-SECRET-5f2c9a7e1b"
CHAT_PATH = "/v1/chat/completions"
MODEL = "openai/gpt-4o"
HELLO = [ChatMessage("system", "You are terse."), ChatMessage("user", "Hello!")]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTokModel]:
    server = FakeTokModel(api_key=KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(fake: FakeTokModel) -> AsyncIterator[TokModelClient]:
    async with TokModelClient(
        fake.url, KEY, timeout=2.0, max_retries=3, retry_budget=5.0, backoff_base=0.01
    ) as c:
        yield c


@asynccontextmanager
async def serve(
    routes: Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
) -> AsyncIterator[str]:
    """Run a throwaway aiohttp app (path -> handler, any method) and yield its base URL."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


async def collect(stream: AsyncIterator[ChatDelta]) -> list[ChatDelta]:
    return [delta async for delta in stream]


# ----------------------------------------------------------------------------- endpoints


async def test_chat(client: TokModelClient, fake: FakeTokModel) -> None:
    result = await client.chat(HELLO, MODEL, max_tokens=500, temperature=0.2)
    assert result.text == stand_in_reply(HELLO)
    assert result.model == MODEL and result.finish_reason == "stop"
    assert result.usage is not None and result.usage.total_tokens == (
        result.usage.prompt_tokens + result.usage.completion_tokens
    )
    (rec,) = fake.requests
    assert rec.authorized and rec.json == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello!"},
        ],
        "max_tokens": 500,
        "temperature": 0.2,
    }


async def test_chat_stream(client: TokModelClient, fake: FakeTokModel) -> None:
    deltas = await collect(client.chat_stream(HELLO, MODEL))
    assert "".join(d.text for d in deltas) == stand_in_reply(HELLO)
    assert len(deltas) > 3 and deltas[-2].finish_reason == "stop"
    # Usage is asked for, and comes alone in the last chunk (OpenAI's include_usage shape).
    assert all(d.usage is None for d in deltas[:-1])
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens > 0
    body = fake.requests[0].json
    assert body is not None and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_a_gateway_refusing_stream_options_is_asked_once_without_them(
    client: TokModelClient, fake: FakeTokModel
) -> None:
    """A gateway that does not know the option answers 400 naming it: retry once without it,
    then never send it again; usage is then estimated by the caller."""
    refusal = "Unrecognized request argument supplied: stream_options"
    fake.fail(Fault(status=400, path=CHAT_PATH, message=refusal))
    first = await collect(client.chat_stream(HELLO, MODEL))
    second = await collect(client.chat_stream(HELLO, MODEL))
    for deltas in (first, second):
        assert "".join(d.text for d in deltas) == stand_in_reply(HELLO)
        assert all(d.usage is None for d in deltas)
    sent = [r.json for r in fake.requests]
    assert [b is not None and "stream_options" in b for b in sent] == [True, False, False]


async def test_another_400_is_not_retried_without_stream_options(
    client: TokModelClient, fake: FakeTokModel
) -> None:
    fake.fail(Fault(status=400, path=CHAT_PATH, message="'messages' must be a non-empty array."))
    with pytest.raises(BadRequest):
        await collect(client.chat_stream(HELLO, MODEL))
    await collect(client.chat_stream(HELLO, MODEL))
    assert all(r.json and "stream_options" in r.json for r in fake.requests)


async def test_chat_stream_parses_odd_but_valid_sse(fake: FakeTokModel) -> None:
    """CRLF lines split across writes, a UTF-8 character split in two, keep-alive comments,
    chunks with empty choices, a usage chunk and `[DONE]`."""
    chunk = {"choices": [{"index": 0, "delta": {"content": "héllo «wörld»"}}]}
    usage = {
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    stop = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    raw = (
        b": keep-alive\r\n\r\n"
        + b"data: "
        + json.dumps(chunk, ensure_ascii=False).encode()
        + b"\r\n\r\n"
        + b'data: {"choices": []}\r\n\r\n'
        + b"data: "
        + json.dumps(stop).encode()
        + b"\r\n\r\n"
        + b"data: "
        + json.dumps(usage).encode()
        + b"\r\n\r\ndata: [DONE]\r\n\r\n"
    )

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        cut = raw.index("é".encode()) + 1  # in the middle of a two-byte character
        for piece in (raw[:cut], raw[cut : cut + 40], raw[cut + 40 :]):
            await resp.write(piece)
        return resp

    async with (
        serve({CHAT_PATH: handler}) as url,
        TokModelClient(url, KEY) as c,
    ):
        deltas = await collect(c.chat_stream(HELLO, MODEL))
    assert [d.text for d in deltas] == ["héllo «wörld»", "", ""]
    assert deltas[1].finish_reason == "stop"
    assert deltas[2].usage is not None and deltas[2].usage.total_tokens == 7


async def test_list_models(client: TokModelClient) -> None:
    models = {m.id: m for m in await client.list_models()}
    assert "openai/gpt-4o" in models and "cohere/rerank-english-v3.0" in models
    assert models["openai/gpt-4o"].owned_by == "openai"
    assert isinstance(models["openai/gpt-4o"].created, int)


async def test_list_models_accepts_a_bare_array() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response([{"id": "a/b", "owned_by": "a"}, {"id": "c/d"}, "junk"])

    async with serve({"/v1beta/models": handler}) as url, TokModelClient(url, KEY) as c:
        models = await c.list_models()
    assert [(m.id, m.owned_by) for m in models] == [("a/b", "a"), ("c/d", None)]


async def test_generate_image(client: TokModelClient, fake: FakeTokModel) -> None:
    images = await client.generate_image("a lighthouse", model="openai/dall-e-3", size="512x512")
    (image,) = images
    assert png_size(image.png) == (512, 512)
    assert image.revised_prompt is not None and "a lighthouse" in image.revised_prompt
    assert fake.requests[0].json == {
        "prompt": "a lighthouse",
        "n": 1,
        "response_format": "b64_json",
        "model": "openai/dall-e-3",
        "size": "512x512",
    }


async def test_generate_image_downloads_a_url_without_the_key() -> None:
    png = fake_media.png_image(32, 16, "x")
    seen: list[str | None] = []

    async def generate(request: web.Request) -> web.StreamResponse:
        base = f"{request.url.origin()}"
        return web.json_response({"created": 1, "data": [{"url": f"{base}/cdn/i.png?sig=s3cr3t"}]})

    async def cdn(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=png, content_type="image/png")

    routes = {"/v1/images/generations": generate, "/cdn/i.png": cdn}
    async with serve(routes) as url, TokModelClient(url, KEY) as c:
        (image,) = await c.generate_image("x")
    assert image.png == png and seen == [None]


async def test_edit_and_vary_image(client: TokModelClient, fake: FakeTokModel) -> None:
    source = fake_media.png_image(64, 64, "source")
    (edited,) = await client.edit_image(source, "add a hat", mask=source, size="256x256")
    assert png_size(edited.png) == (256, 256)
    rec = fake.requests[-1]
    assert rec.files == {"image": ("image.png", len(source)), "mask": ("mask.png", len(source))}
    assert rec.form == {
        "prompt": "add a hat",
        "size": "256x256",
        "n": "1",
        "response_format": "b64_json",
    }

    variations = await client.vary_image(source, size="256x256", n=2)
    assert [png_size(v.png) for v in variations] == [(256, 256)] * 2
    assert fake.requests[-1].files == {"image": ("image.png", len(source))}


async def test_multipart_is_rebuilt_for_a_retry(client: TokModelClient, fake: FakeTokModel) -> None:
    fake.fail(Fault(status=502, path="/v1/images/variations"))
    source = fake_media.png_image(8, 8, "s")
    (image,) = await client.vary_image(source, size="256x256")
    assert png_size(image.png) == (256, 256)
    assert [r.files for r in fake.requests] == [{"image": ("image.png", len(source))}] * 2


@pytest.mark.parametrize("fmt", ["mp3", "wav", "flac", "opus", "aac", "pcm"])
async def test_speech(client: TokModelClient, fake: FakeTokModel, fmt: str) -> None:
    audio = await client.speech(
        "Hello there", model="openai/tts-1", voice="alloy", response_format=fmt, speed=1.5
    )
    assert audio == fake_media.speech_audio(fmt, 0.5)  # 11 chars / 1.5 -> clamped to 0.5 s
    assert fake.requests[0].json == {
        "model": "openai/tts-1",
        "input": "Hello there",
        "voice": "alloy",
        "response_format": fmt,
        "speed": 1.5,
    }


async def test_transcribe_and_translate(client: TokModelClient, fake: FakeTokModel) -> None:
    audio = fake_media.opus_audio(0.5)
    text = await client.transcribe(audio, "voice.ogg", model="openai/whisper-1", language="fr")
    assert text == stand_in_transcript("voice.ogg", audio, False)
    assert fake.requests[-1].path == "/v1/audio/transcriptions"
    assert fake.requests[-1].form == {"model": "openai/whisper-1", "language": "fr"}
    assert fake.requests[-1].files == {"file": ("voice.ogg", len(audio))}

    text = await client.transcribe(
        audio, "voice.ogg", model="openai/whisper-1", translate=True, language="fr"
    )
    assert text == stand_in_transcript("voice.ogg", audio, True)
    assert fake.requests[-1].path == "/v1/audio/translations"
    assert fake.requests[-1].form == {"model": "openai/whisper-1"}  # no language to translations


async def test_a_file_name_with_spaces_reaches_tokmodel_as_it_is(
    client: TokModelClient, fake: FakeTokModel
) -> None:
    # Gateways read the name as sent (none decodes %20), and take the format from it.
    audio = fake_media.opus_audio(0.2)
    await client.transcribe(audio, "my standup é.ogg", model="openai/whisper-1")
    assert fake.requests[-1].files == {"file": ("my standup é.ogg", len(audio))}


async def test_transcribe_rejected_file_is_bad_request(client: TokModelClient) -> None:
    with pytest.raises(BadRequest, match="Invalid file format"):
        await client.transcribe(b"not audio", "notes.txt", model="openai/whisper-1")


async def test_transcribe_accepts_a_plain_text_body() -> None:
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        seen["content_type"] = upload.content_type
        upload.file.close()
        return web.Response(text="bonjour tout le monde\n", content_type="text/plain")

    async with serve({"/v1/audio/transcriptions": handler}) as url, TokModelClient(url, KEY) as c:
        text = await c.transcribe(b"RIFF", "a.wav", model="m", content_type="audio/x-wav")
    assert text == "bonjour tout le monde" and seen["content_type"] == "audio/x-wav"


async def test_embeddings(client: TokModelClient) -> None:
    vectors = await client.embeddings(["one", "two", "one"], model="openai/text-embedding-3-small")
    assert len(vectors) == 3 and all(len(v) == EMBEDDING_DIMENSIONS for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    short = await client.embed(["one two"], model="openai/text-embedding-3-small", dimensions=8)
    assert len(short.vectors[0]) == 8
    assert short.usage is not None and short.usage.total_tokens > 0


async def test_embeddings_are_ordered_by_index() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        data = [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1, 1.5]}]
        return web.json_response({"object": "list", "data": data})

    async with serve({"/v1/embeddings": handler}) as url, TokModelClient(url, KEY) as c:
        assert await c.embeddings(["a", "b"], model="m") == [[1.0, 1.5], [2.0]]


async def test_rerank(client: TokModelClient) -> None:
    docs = ["Paris is in France.", "Bananas are yellow.", "France borders Spain."]
    results = await client.rerank("France", docs, model="cohere/rerank-english-v3.0", top_n=2)
    assert [r.index for r in results] == [0, 2]
    assert [r.document for r in results] == [docs[0], docs[2]]
    assert results[0].relevance_score >= results[1].relevance_score


async def test_rerank_accepts_string_documents() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        results = [
            {"index": 1, "relevance_score": 0.9, "document": "b text"},
            {"index": 0, "relevance_score": 0.1},
        ]
        return web.json_response({"results": results})

    async with serve({"/v1/rerank": handler}) as url, TokModelClient(url, KEY) as c:
        results = await c.rerank("q", ["a text", "b text"], model="m")
    assert [(r.index, r.relevance_score, r.document) for r in results] == [
        (1, 0.9, "b text"),
        (0, 0.1, "a text"),
    ]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, BadRequest),
        (403, InsufficientCredits),
        (404, NotFound),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
    ],
)
async def test_error_status_mapping(
    fake: FakeTokModel, status: int, exc_type: type[TokModelError]
) -> None:
    fake.fail(Fault(status=status, times=-1))
    async with TokModelClient(fake.url, KEY, max_retries=0) as c:
        with pytest.raises(exc_type) as info:
            await c.chat(HELLO, MODEL)
    assert info.value.status == status
    if status == 403:
        assert info.value.message == "Insufficient credits. Please top up your account balance."
        assert info.value.error_type == "authorization_error"


async def test_wrong_key_is_unauthorized(fake: FakeTokModel) -> None:
    async with TokModelClient(fake.url, "wrong-key") as c:
        with pytest.raises(Unauthorized) as info:
            await c.list_models()
    assert info.value.message == "Invalid or missing API key."
    assert info.value.error_type == "authentication_error"
    assert len(fake.requests) == 1


async def test_unknown_model_is_not_found(client: TokModelClient) -> None:
    with pytest.raises(NotFound, match="The model 'nobody/nothing' does not exist."):
        await client.chat(HELLO, "nobody/nothing")


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_no_retry_for_client_errors(
    client: TokModelClient, fake: FakeTokModel, status: int
) -> None:
    fake.fail(Fault(status=status, times=-1))
    with pytest.raises(TokModelError):
        await client.chat(HELLO, MODEL)
    assert len(fake.requests) == 1


async def test_429_with_retry_after_is_retried_after_waiting(
    client: TokModelClient, fake: FakeTokModel
) -> None:
    fake.fail(Fault(status=429, retry_after=1))
    result = await client.chat(HELLO, MODEL)
    assert result.text == stand_in_reply(HELLO)
    first, second = fake.requests
    assert second.time - first.time >= 1.0


async def test_500_twice_then_success(client: TokModelClient, fake: FakeTokModel) -> None:
    fake.fail(Fault(status=500, times=2))
    assert (await client.chat(HELLO, MODEL)).text == stand_in_reply(HELLO)
    assert len(fake.requests) == 3


async def test_5xx_beyond_max_retries_raises(fake: FakeTokModel) -> None:
    fake.fail(Fault(status=502, times=-1))
    async with TokModelClient(fake.url, KEY, max_retries=2, backoff_base=0.01) as c:
        with pytest.raises(ServerError) as info:
            await c.chat(HELLO, MODEL)
    assert info.value.status == 502
    assert len(fake.requests) == 1 + 2


async def test_retry_after_beyond_budget_raises_at_once(fake: FakeTokModel) -> None:
    fake.fail(Fault(status=429, retry_after=30, times=-1))
    async with TokModelClient(fake.url, KEY, retry_budget=5.0, backoff_base=0.01) as c:
        start = time.monotonic()
        with pytest.raises(RateLimited) as info:
            await c.chat(HELLO, MODEL)
    assert time.monotonic() - start < 0.5
    assert info.value.retry_after == 30
    assert len(fake.requests) == 1


async def test_503_retry_after_is_honoured(client: TokModelClient, fake: FakeTokModel) -> None:
    fake.fail(Fault(status=503, retry_after=0.3))
    await client.chat(HELLO, MODEL)
    first, second = fake.requests
    assert second.time - first.time >= 0.3


async def test_retry_budget_limits_total_sleep(fake: FakeTokModel) -> None:
    fake.fail(Fault(status=500, times=-1))
    async with TokModelClient(
        fake.url, KEY, max_retries=50, retry_budget=0.3, backoff_base=0.2
    ) as c:
        start = time.monotonic()
        with pytest.raises(ServerError):
            await c.chat(HELLO, MODEL)
    assert time.monotonic() - start < 1.5


async def test_dropped_connection_is_retried(client: TokModelClient, fake: FakeTokModel) -> None:
    fake.fail(Fault(cut_after=10))
    assert (await client.chat(HELLO, MODEL)).text == stand_in_reply(HELLO)
    assert len(fake.requests) == 2


async def test_dropped_connection_every_time_is_connection_failed(fake: FakeTokModel) -> None:
    fake.fail(Fault(cut_after=10, times=-1))
    async with TokModelClient(fake.url, KEY, max_retries=1, backoff_base=0.01) as c:
        with pytest.raises(ConnectionFailed):
            await c.chat(HELLO, MODEL)
    assert len(fake.requests) == 2


async def test_stream_cut_raises_stream_broken_with_partial(
    client: TokModelClient, fake: FakeTokModel
) -> None:
    fake.fail(Fault(cut_after=4))  # the role chunk and three content chunks
    received: list[str] = []
    with pytest.raises(StreamBroken) as info:
        async for delta in client.chat_stream(HELLO, MODEL):
            received.append(delta.text)
    assert info.value.partial == "".join(received)
    assert info.value.partial and stand_in_reply(HELLO).startswith(info.value.partial)
    assert info.value.partial != stand_in_reply(HELLO)
    assert len(fake.requests) == 1  # a stream that started is never replayed


async def test_stream_error_status_before_first_byte_is_retried(
    client: TokModelClient, fake: FakeTokModel
) -> None:
    fake.fail(Fault(status=503))
    deltas = await collect(client.chat_stream(HELLO, MODEL))
    assert "".join(d.text for d in deltas) == stand_in_reply(HELLO)
    assert len(fake.requests) == 2


async def test_stream_error_status_is_raised(client: TokModelClient, fake: FakeTokModel) -> None:
    fake.fail(Fault(status=403))
    with pytest.raises(InsufficientCredits):
        await collect(client.chat_stream(HELLO, MODEL))


async def test_stream_mid_answer_error_event_is_stream_broken() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n')
        await resp.write(b'data: {"error":{"message":"upstream died","code":502}}\n\n')
        return resp

    async with serve({CHAT_PATH: handler}) as url, TokModelClient(url, KEY) as c:
        with pytest.raises(StreamBroken, match="upstream died") as info:
            await collect(c.chat_stream(HELLO, MODEL))
    assert info.value.partial == "Hi"


async def test_delay_beyond_timeout_is_timeout(fake: FakeTokModel) -> None:
    fake.fail(Fault(delay=2.0))
    async with TokModelClient(fake.url, KEY, timeout=0.3) as c:
        start = time.monotonic()
        with pytest.raises(Timeout):
            await c.chat(HELLO, MODEL)
    assert time.monotonic() - start < 1.0
    assert len(fake.requests) == 1  # never retried


async def test_stream_silence_is_timeout_with_partial() -> None:
    async with (
        FakeTokModel(KEY, chunk_delay=0.5) as slow,
        TokModelClient(slow.url, KEY, timeout=0.3) as c,
    ):
        with pytest.raises(Timeout) as info:
            await collect(c.chat_stream(HELLO, MODEL))
    assert info.value.partial == ""  # the role chunk came, then silence


async def test_stream_timeout_keeps_partial_text() -> None:
    chunk = b'data: {"choices":[{"index":0,"delta":{"content":"Partial"}}]}\n\n'

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(chunk)
        try:
            await resp.write(b": still thinking\n\n")
            await asyncio.sleep(0.6)
        except ConnectionResetError:
            pass
        return resp

    async with serve({CHAT_PATH: handler}) as url, TokModelClient(url, KEY, timeout=0.3) as c:
        with pytest.raises(Timeout) as info:
            await collect(c.chat_stream(HELLO, MODEL))
    assert info.value.partial == "Partial"


async def test_malformed_answer(client: TokModelClient, fake: FakeTokModel) -> None:
    fake.fail(Fault(malformed=True))
    with pytest.raises(MalformedResponse):
        await client.chat(HELLO, MODEL)
    assert len(fake.requests) == 1


async def test_malformed_stream_is_malformed(client: TokModelClient, fake: FakeTokModel) -> None:
    fake.fail(Fault(malformed=True))
    with pytest.raises(MalformedResponse):
        await collect(client.chat_stream(HELLO, MODEL))


@pytest.mark.parametrize(
    ("body", "error", "partial"),
    [
        (b"data: <html>\n\n", MalformedResponse, None),
        (
            b'data: {"choices":[{"index":0,"delta":{"content":"So"}}]}\n\ndata: {oops\n\n',
            StreamBroken,
            "So",
        ),
        (b"<html>gateway page</html>", MalformedResponse, None),
    ],
)
async def test_unreadable_stream_events(
    body: bytes, error: type[TokModelError], partial: str | None
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="text/event-stream")

    async with serve({CHAT_PATH: handler}) as url, TokModelClient(url, KEY) as c:
        with pytest.raises(error) as info:
            await collect(c.chat_stream(HELLO, MODEL))
    if partial is not None:
        assert isinstance(info.value, StreamBroken) and info.value.partial == partial


async def test_stream_request_answered_with_plain_json() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        choice = {"index": 0, "message": {"role": "assistant", "content": "All at once."}}
        usage = {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
        return web.json_response(
            {"model": MODEL, "choices": [{**choice, "finish_reason": "stop"}], "usage": usage}
        )

    async with serve({CHAT_PATH: handler}) as url, TokModelClient(url, KEY) as c:
        (delta,) = await collect(c.chat_stream(HELLO, MODEL))
    assert (delta.text, delta.finish_reason) == ("All at once.", "stop")
    assert delta.usage is not None and delta.usage.total_tokens == 4


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_connection_failed() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with TokModelClient(url, KEY, max_retries=2, backoff_base=0.01) as c:
        with pytest.raises(ConnectionFailed):
            await c.list_models()
        with pytest.raises(ConnectionFailed):
            await collect(c.chat_stream(HELLO, MODEL))


# ----------------------------------------------------------------------------- key hygiene


async def test_key_never_in_exceptions_or_logs(
    fake: FakeTokModel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    faults = [
        Fault(status=400, message=f"Bad key {KEY} given"),  # a gateway echoing the key
        Fault(status=403),
        Fault(status=429, retry_after=60),
        Fault(status=500, times=-1),
    ]
    async with TokModelClient(fake.url, KEY, max_retries=1, backoff_base=0.01, timeout=0.3) as c:
        for fault in faults:
            fake.clear()
            fake.fail(fault)
            try:
                await c.chat(HELLO, MODEL)
            except TokModelError as exc:
                errors.append(exc)
        fake.clear()
        for fault in (Fault(cut_after=2), Fault(delay=1.0), Fault(malformed=True)):
            fake.fail(fault)
            try:
                await collect(c.chat_stream(HELLO, MODEL))
            except TokModelError as exc:
                errors.append(exc)
    async with TokModelClient(f"http://127.0.0.1:{closed_port()}", KEY, max_retries=0) as c:
        with pytest.raises(ConnectionFailed) as info:
            await c.list_models()
        errors.append(info.value)

    assert len(errors) == 8
    assert "Bad key *** given" in str(errors[0])
    for error in errors:
        text = "".join(traceback.format_exception(error)) + repr(error) + repr(vars(error))
        assert KEY not in text
    debug_lines = [r for r in caplog.records if r.name == "tokbot.tokmodel"]
    assert debug_lines and all(r.levelno == logging.DEBUG for r in debug_lines)
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert KEY not in caplog.text
    assert any("POST /v1/chat/completions -> 500" in r.getMessage() for r in debug_lines)


# ----------------------------------------------------------------------------- lifecycle, SSE


async def test_passed_in_session_is_left_open(fake: FakeTokModel) -> None:
    async with aiohttp.ClientSession() as session:
        async with TokModelClient(fake.url, KEY, session=session) as c:
            await c.list_models()
        assert not session.closed
    owned = TokModelClient(fake.url, KEY)
    await owned.list_models()  # the session is created lazily
    await owned.close()
    assert KEY not in repr(owned)


def test_sse_decoder_handles_splits_and_fields() -> None:
    decoder = SSEDecoder()
    raw = "event: x\r\ndata: a\r\ndata:b\r\nid: 1\r\n\r\n: comment\n\ndata: «z»\n\n".encode()
    events: list[str] = []
    for i in range(len(raw)):  # one byte at a time: every possible split point
        events += decoder.feed(raw[i : i + 1])
    assert events == ["a\nb", "«z»"]
    assert decoder.feed(b"data: [DONE]") == []
    assert decoder.close() == ["[DONE]"]


def test_retry_after_forms() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    assert parse_retry_after(format_datetime(soon, usegmt=True)) == pytest.approx(30, abs=2)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after(" 1.5 ") == 1.5
    assert [parse_retry_after(v) for v in (None, "", "soon", "nan", "inf")] == [None] * 5


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", "/"])
async def test_a_base_url_ending_in_v1_is_normalised_and_said_once(
    fake: FakeTokModel, caplog: pytest.LogCaptureFixture, suffix: str
) -> None:
    """People paste the OpenAI SDK's base URL (`…/v1`, as TokModel's gateway page shows it)."""
    caplog.set_level(logging.INFO, logger="tokbot.tokmodel")
    async with TokModelClient(fake.url + suffix, KEY, max_retries=0) as c:
        await c.chat(HELLO, MODEL)
        await c.list_models()
    assert [r.path for r in fake.requests] == [CHAT_PATH, "/v1beta/models"]
    said = [r for r in caplog.records if "ends in /v1" in r.getMessage()]
    assert len(said) == (0 if suffix == "/" else 1)
    if said:
        assert said[0].levelno == logging.INFO and fake.url in said[0].getMessage()

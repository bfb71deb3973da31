"""The fake TokModel over real HTTP: shapes, media validity, errors, faults and HTTP controls.

These talk to the fake with plain aiohttp (not tokbot's client), so the fake is checked on its own.
Media files are parsed here with independent code: PNG chunks, MPEG/ADTS frame headers, FLAC
frames with their CRC-8/CRC-16 and MD5, and Ogg pages with their CRC-32.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import math
import struct
import time
import wave
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.tokmodel import fake_media
from bot.tokmodel.fake import (
    AUDIO_FORMAT_ERROR,
    EMBEDDING_DIMENSIONS,
    MODEL_IDS,
    FakeTokModel,
    Fault,
    stand_in_embedding,
    stand_in_reply,
    stand_in_transcript,
)
from bot.tokmodel.types import ChatMessage

KEY = "fake-test-key-0123456789"
CHAT = "/v1/chat/completions"
UNAUTHORIZED = {
    "error": {"message": "Invalid or missing API key.", "type": "authentication_error", "code": 401}
}
NO_CREDITS = {
    "error": {
        "message": "Insufficient credits. Please top up your account balance.",
        "type": "authorization_error",
        "code": 403,
    }
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeTokModel]:
    server = FakeTokModel(api_key=KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http(fake: FakeTokModel) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(base_url=fake.url, headers=headers) as session:
        yield session


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


async def post_json(
    http: aiohttp.ClientSession, path: str, body: dict[str, Any]
) -> tuple[int, Any]:
    async with http.post(path, json=body) as resp:
        return resp.status, await resp.json()


# ----------------------------------------------------------------------------- parsers


def _table(width: int, poly: int) -> list[int]:
    top, mask = 1 << (width - 1), (1 << width) - 1
    out = []
    for byte in range(256):
        reg = byte << (width - 8)
        for _ in range(8):
            reg = ((reg << 1) ^ poly) & mask if reg & top else (reg << 1) & mask
        out.append(reg)
    return out


_CRC8, _CRC16, _CRC32 = _table(8, 0x07), _table(16, 0x8005), _table(32, 0x04C11DB7)


def crc(data: bytes, width: int) -> int:
    table = {8: _CRC8, 16: _CRC16, 32: _CRC32}[width]
    mask, reg = (1 << width) - 1, 0
    for b in data:
        reg = ((reg << 8) & mask) ^ table[((reg >> (width - 8)) ^ b) & 0xFF]
    return reg


def parse_png(data: bytes) -> tuple[int, int]:
    """Validate chunk CRCs and the IDAT size; return (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (stored,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == stored
        chunks[kind] = body
        if kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert list(chunks)[0] == b"IHDR" and list(chunks)[-1] == b"IEND"
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    assert depth == 8
    assert len(zlib.decompress(idat)) == height * (1 + width * channels)
    return width, height


MP3_BITRATES = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]


def mp3_seconds(data: bytes) -> float:
    pos = frames = 0
    rate = 0
    while pos < len(data):
        header = int.from_bytes(data[pos : pos + 4], "big")
        assert header >> 21 == 0x7FF, "frame sync"
        assert (header >> 19) & 3 == 3, "MPEG-1"
        assert (header >> 17) & 3 == 1, "Layer III"
        bitrate = MP3_BITRATES[(header >> 12) & 0xF] * 1000
        rate = [44100, 48000, 32000][(header >> 10) & 3]
        padding = (header >> 9) & 1
        pos += 144 * bitrate // rate + padding
        frames += 1
    assert pos == len(data)
    return frames * 1152 / rate


def adts_seconds(data: bytes) -> float:
    pos = frames = 0
    while pos < len(data):
        header = int.from_bytes(data[pos : pos + 7], "big")
        assert header >> 44 == 0xFFF and (header >> 41) & 3 == 0
        assert (header >> 38) & 3 == 1, "AAC LC"
        assert (header >> 34) & 0xF == 6, "24 kHz"
        assert (header >> 30) & 7 == 1, "mono"
        length = (header >> 13) & 0x1FFF
        assert length > 7
        pos += length
        frames += 1
    assert pos == len(data)
    return frames * 1024 / 24000


def _utf8_number(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    extra = 0
    while first & (0x40 >> extra):
        extra += 1
    value = first & (0x3F >> extra)
    for b in data[pos + 1 : pos + 1 + extra]:
        assert b & 0xC0 == 0x80
        value = (value << 6) | (b & 0x3F)
    return value, pos + 1 + extra


def flac_samples(data: bytes) -> list[int]:
    """Decode a constant/verbatim-only FLAC stream, checking every CRC and the MD5."""
    assert data[:4] == b"fLaC"
    assert data[4] == 0x80 and int.from_bytes(data[5:8], "big") == 34  # last block: STREAMINFO
    info = data[8:42]
    packed = int.from_bytes(info[10:18], "big")
    rate, channels, bits = packed >> 44, ((packed >> 41) & 7) + 1, ((packed >> 36) & 31) + 1
    total = packed & ((1 << 36) - 1)
    assert (rate, channels, bits) == (24000, 1, 16)
    samples: list[int] = []
    pos, expected_number = 42, 0
    while pos < len(data):
        start = pos
        assert data[pos : pos + 2] == b"\xff\xf8"
        size_code, rate_code = data[pos + 2] >> 4, data[pos + 2] & 0xF
        assert rate_code == 0b0111 and data[pos + 3] == 0b0000_1000
        number, pos = _utf8_number(data, pos + 4)
        assert number == expected_number
        if size_code == 0b0110:
            size, pos = data[pos] + 1, pos + 1
        elif size_code == 0b0111:
            size, pos = int.from_bytes(data[pos : pos + 2], "big") + 1, pos + 2
        else:
            assert size_code >= 0b1000
            size = 256 << (size_code - 8)
        assert crc(data[start:pos], 8) == data[pos]
        pos += 1
        kind = data[pos]
        if kind == 0x00:
            (value,) = struct.unpack(">h", data[pos + 1 : pos + 3])
            samples += [value] * size
            pos += 3
        else:
            assert kind == 0x02, "only constant and verbatim subframes are expected"
            samples += struct.unpack(f">{size}h", data[pos + 1 : pos + 1 + 2 * size])
            pos += 1 + 2 * size
        assert crc(data[start:pos], 16) == int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        expected_number += 1
    assert len(samples) == total
    assert hashlib.md5(struct.pack(f"<{total}h", *samples)).digest() == info[18:34]
    return samples


def ogg_packets(data: bytes) -> tuple[list[bytes], int]:
    """Check every Ogg page (CRC, sequence, BOS/EOS); return the packets and the last granule."""
    pos, seq, packets, pending, granule = 0, 0, [], b"", 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS" and data[pos + 4] == 0
        kind = data[pos + 5]
        granule, _serial, page_seq, stored = struct.unpack("<qIII", data[pos + 6 : pos + 26])
        assert page_seq == seq
        assert bool(kind & 0x02) == (seq == 0), "BOS only on the first page"
        count = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + count]
        length = 27 + count + sum(lacing)
        page = bytearray(data[pos : pos + length])
        page[22:26] = b"\0\0\0\0"
        assert crc(bytes(page), 32) == stored
        body = data[pos + 27 + count : pos + length]
        offset = 0
        for lace in lacing:
            pending += body[offset : offset + lace]
            offset += lace
            if lace < 255:
                packets.append(pending)
                pending = b""
        pos += length
        seq += 1
        if pos == len(data):
            assert kind & 0x04, "EOS on the last page"
    return packets, granule


async def speech(http: aiohttp.ClientSession, text: str, fmt: str | None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"model": "openai/tts-1", "input": text, "voice": "alloy", **extra}
    if fmt is not None:
        body["response_format"] = fmt
    async with http.post("/v1/audio/speech", json=body) as resp:
        assert resp.status == 200, await resp.text()
        expected = fake_media.AUDIO_CONTENT_TYPES[fmt or "mp3"]
        assert resp.headers["Content-Type"].startswith(expected)
        return await resp.read()


# ----------------------------------------------------------------------------- models, auth


async def test_models_list_shape(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1beta/models") as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        body = await resp.json()
    assert body["object"] == "list"
    ids = {m["id"] for m in body["data"]}
    assert {
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
        "anthropic/claude-sonnet-4-5",
        "openai/dall-e-3",
        "openai/tts-1",
        "openai/tts-1-hd",
        "openai/whisper-1",
        "openai/text-embedding-3-small",
        "cohere/rerank-english-v3.0",
    } <= ids
    for model in body["data"]:
        assert model["object"] == "model" and isinstance(model["created"], int)
        assert model["owned_by"] == model["id"].split("/")[0]


@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", f"Basic {KEY}", "Bearer"])
async def test_bad_or_missing_key_is_401_with_documented_body(
    fake: FakeTokModel, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    async with aiohttp.ClientSession() as session:
        for method, path in [("GET", "/v1beta/models"), ("POST", CHAT), ("POST", "/v1/nowhere")]:
            async with session.request(method, fake.url + path, headers=headers, json={}) as r:
                assert r.status == 401
                assert await r.json() == UNAUTHORIZED
    assert [r.authorized for r in fake.requests] == [False, False, False]


async def test_requests_are_recorded_without_header_values(
    fake: FakeTokModel, http: aiohttp.ClientSession
) -> None:
    before = time.monotonic()
    await post_json(http, CHAT, {"model": "openai/gpt-4o", "messages": [user("hi")]})
    (rec,) = fake.requests
    assert (rec.method, rec.path, rec.authorized) == ("POST", CHAT, True)
    assert rec.json == {"model": "openai/gpt-4o", "messages": [user("hi")]}
    assert rec.form == {} and rec.files == {}
    assert before <= rec.time <= time.monotonic()
    assert KEY not in repr(fake.requests)
    async with http.get("/_fake/requests") as resp:
        listed = await resp.json()
    assert KEY not in json.dumps(listed)
    assert listed[0]["path"] == CHAT and listed[0]["authorized"] is True


async def test_unknown_path_and_method_answer_json_errors(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/does-not-exist") as resp:
        assert resp.status == 404 and resp.content_type == "application/json"
        body = await resp.json()
        assert body["error"]["type"] == "not_found_error" and body["error"]["code"] == 404
    async with http.get(CHAT) as resp:
        assert resp.status == 405
        assert (await resp.json())["error"]["code"] == 405
    async with http.get("/elsewhere") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["type"] == "not_found_error"


# ----------------------------------------------------------------------------- chat


def test_stand_in_reply_wording() -> None:
    assert stand_in_reply([user("hello")]) == (
        "(stand-in) You said: «hello». I can see 0 earlier message(s) in this conversation."
    )
    history = [
        {"role": "system", "content": "You are a pirate." + "!" * 100},
        user("first question " + "x" * 100),
        {"role": "assistant", "content": "an answer"},
        user("y" * 300),
    ]
    text = stand_in_reply(history)
    assert text.startswith(f"(stand-in) You said: «{'y' * 200}». I can see 2 earlier message(s)")
    assert f" The first was: «{('first question ' + 'x' * 100)[:80]}»." in text
    assert text.endswith(f" Persona: «{('You are a pirate.' + '!' * 100)[:39]}…».")
    typed = [ChatMessage("user", "a"), ChatMessage("assistant", "b"), ChatMessage("user", "c")]
    as_dicts = [user("a"), {"role": "assistant", "content": "b"}, user("c")]
    assert (
        stand_in_reply(typed)
        == stand_in_reply(as_dicts)
        == (
            "(stand-in) You said: «c». I can see 2 earlier message(s) in this conversation."
            " The first was: «a»."
        )
    )


async def test_chat_completion_shape(http: aiohttp.ClientSession) -> None:
    messages = [{"role": "system", "content": "Be brief."}, user("Hello there")]
    status, body = await post_json(http, CHAT, {"model": "openai/gpt-4o", "messages": messages})
    assert status == 200
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == "openai/gpt-4o" and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"] == {"role": "assistant", "content": stand_in_reply(messages)}
    usage = body["usage"]
    assert usage["prompt_tokens"] >= 1 and usage["completion_tokens"] >= 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == math.ceil(len(stand_in_reply(messages)) / 4)


async def test_chat_max_tokens_stops_mid_answer(http: aiohttp.ClientSession) -> None:
    body = {"model": "openai/gpt-4o", "messages": [user("tell me")], "max_tokens": 3}
    status, answer = await post_json(http, CHAT, body)
    assert status == 200
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["choices"][0]["message"]["content"] == stand_in_reply([user("tell me")])[:12]
    assert answer["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"model": "nope/model", "messages": [user("x")]},
            404,
            "The model 'nope/model' does not exist.",
        ),
        ({"messages": [user("x")]}, 400, None),
        ({"model": "openai/gpt-4o", "messages": []}, 400, None),
        ({"model": "openai/gpt-4o"}, 400, None),
        ({"model": "openai/gpt-4o", "messages": [{"role": "tool", "content": "x"}]}, 400, None),
        ({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": 5}]}, 400, None),
        ({"model": "openai/gpt-4o", "messages": [user("x")], "temperature": 3}, 400, None),
        ({"model": "openai/gpt-4o", "messages": [user("x")], "stream": "yes"}, 400, None),
    ],
)
async def test_chat_validation(
    http: aiohttp.ClientSession, body: dict[str, Any], status: int, message: str | None
) -> None:
    got_status, answer = await post_json(http, CHAT, body)
    assert got_status == status
    error = answer["error"]
    assert error["code"] == status
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    if message is not None:
        assert answer == {"error": {"message": message, "type": "not_found_error", "code": 404}}


async def test_chat_rejects_a_body_that_is_not_json(http: aiohttp.ClientSession) -> None:
    async with http.post(CHAT, data=b"{nope", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["type"] == "invalid_request_error"


async def read_sse(resp: aiohttp.ClientResponse) -> list[str]:
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    raw = (await resp.read()).decode("utf-8")
    events = [block for block in raw.split("\n\n") if block]
    assert all(e.startswith("data: ") for e in events)
    return [e.removeprefix("data: ") for e in events]


@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_stream_events(http: aiohttp.ClientSession, include_usage: bool) -> None:
    messages = [user("stream this please")]
    body: dict[str, Any] = {"model": "openai/gpt-4o-mini", "messages": messages, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    async with http.post(CHAT, json=body) as resp:
        assert resp.status == 200
        events = await read_sse(resp)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["id"] == chunks[0]["id"] and c["model"] == "openai/gpt-4o-mini" for c in chunks)
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content", "") for c in with_choices]
    assert "".join(pieces) == stand_in_reply(messages)
    assert all(len(p.split()) <= 2 for p in pieces)
    assert with_choices[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in with_choices[:-1])
    usage_chunks = [c for c in chunks if not c["choices"]]
    if include_usage:
        (last,) = usage_chunks
        assert last is chunks[-1] and last["usage"]["total_tokens"] > 0
    else:
        assert usage_chunks == [] and all("usage" not in c for c in chunks)


async def test_set_reply_and_http_reply_control(
    fake: FakeTokModel, http: aiohttp.ClientSession
) -> None:
    body = {"model": "openai/gpt-4o", "messages": [user("x")]}
    fake.set_reply("Fixed answer.")
    assert (await post_json(http, CHAT, body))[1]["choices"][0]["message"]["content"] == (
        "Fixed answer."
    )
    async with http.post("/_fake/reply", json={"text": "Over HTTP."}) as resp:
        assert resp.status == 200
    assert (await post_json(http, CHAT, body))[1]["choices"][0]["message"]["content"] == (
        "Over HTTP."
    )
    async with http.post("/_fake/reply", json={"text": None}) as resp:
        assert resp.status == 200
    answer = (await post_json(http, CHAT, body))[1]
    assert answer["choices"][0]["message"]["content"] == stand_in_reply([user("x")])


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("size", ["256x256", "512x512", "1024x1024", "1792x1024", "1024x1792"])
async def test_image_generation_b64_is_a_real_png(http: aiohttp.ClientSession, size: str) -> None:
    body = {"prompt": "a red fox", "size": size, "response_format": "b64_json"}
    status, answer = await post_json(http, "/v1/images/generations", body)
    assert status == 200 and isinstance(answer["created"], int)
    (item,) = answer["data"]
    assert "a red fox" in item["revised_prompt"]
    width, height = (int(v) for v in size.split("x"))
    assert parse_png(base64.b64decode(item["b64_json"])) == (width, height)


async def test_image_generation_is_deterministic_and_n_varies(http: aiohttp.ClientSession) -> None:
    body = {"prompt": "owl", "size": "256x256", "response_format": "b64_json", "n": 2}
    first = (await post_json(http, "/v1/images/generations", body))[1]["data"]
    again = (await post_json(http, "/v1/images/generations", body))[1]["data"]
    assert [i["b64_json"] for i in first] == [i["b64_json"] for i in again]
    assert first[0]["b64_json"] != first[1]["b64_json"]
    other = {**body, "prompt": "cat", "n": 1}
    assert (await post_json(http, "/v1/images/generations", other))[1]["data"][0][
        "b64_json"
    ] != first[0]["b64_json"]


async def test_image_generation_defaults_to_a_url_served_without_auth(
    fake: FakeTokModel, http: aiohttp.ClientSession
) -> None:
    status, answer = await post_json(http, "/v1/images/generations", {"prompt": "boat"})
    assert status == 200
    url = answer["data"][0]["url"]
    assert url.startswith(f"{fake.url}/_fake/files/") and url.endswith(".png")
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        assert parse_png(await resp.read()) == (1024, 1024)
    assert fake.requests[-1].path.startswith("/_fake/files/")
    assert fake.requests[-1].authorized is False


@pytest.mark.parametrize(
    "body",
    [
        {"size": "256x256"},
        {"prompt": ""},
        {"prompt": "x", "size": "300x300"},
        {"prompt": "x", "response_format": "gif"},
        {"prompt": "x", "n": 0},
    ],
)
async def test_image_generation_validation(
    http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    status, answer = await post_json(http, "/v1/images/generations", body)
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"


def image_form(image: bytes | None, **fields: str | bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    if image is not None:
        form.add_field("image", image, filename="photo.png", content_type="image/png")
    for name, value in fields.items():
        if isinstance(value, bytes):
            form.add_field(name, value, filename=f"{name}.png", content_type="image/png")
        else:
            form.add_field(name, value)
    return form


async def test_image_edit_and_variation(fake: FakeTokModel, http: aiohttp.ClientSession) -> None:
    png = fake_media.png_image(64, 64, "source")
    form = image_form(png, prompt="add a hat", mask=png, size="256x256", response_format="b64_json")
    async with http.post("/v1/images/edits", data=form) as resp:
        assert resp.status == 200, await resp.text()
        item = (await resp.json())["data"][0]
    assert parse_png(base64.b64decode(item["b64_json"])) == (256, 256)
    rec = fake.requests[-1]
    assert rec.files == {"image": ("photo.png", len(png)), "mask": ("mask.png", len(png))}
    assert rec.form == {"prompt": "add a hat", "size": "256x256", "response_format": "b64_json"}
    assert rec.json is None

    form = image_form(png, size="512x512", response_format="b64_json", n="2")
    async with http.post("/v1/images/variations", data=form) as resp:
        assert resp.status == 200
        items = (await resp.json())["data"]
    assert [parse_png(base64.b64decode(i["b64_json"])) for i in items] == [(512, 512)] * 2


@pytest.mark.parametrize(
    ("path", "form_args"),
    [
        ("/v1/images/edits", {"image": b"GIF89a not a png", "prompt": "x"}),
        ("/v1/images/edits", {"image": None, "prompt": "x"}),
        ("/v1/images/edits", {"image": "png", "prompt": None}),
        ("/v1/images/edits", {"image": "png", "prompt": "x", "mask": b"\xff\xd8jpeg"}),
        ("/v1/images/variations", {"image": b"\xff\xd8\xff jpeg"}),
        ("/v1/images/variations", {"image": "png", "size": "10x10"}),
    ],
)
async def test_image_upload_validation(
    http: aiohttp.ClientSession, path: str, form_args: dict[str, Any]
) -> None:
    png = fake_media.png_image(8, 8, "s")
    image = form_args["image"]
    fields = {k: v for k, v in form_args.items() if v is not None and k != "image"}
    form = image_form(png if image == "png" else image, **fields)
    async with http.post(path, data=form) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"


def test_png_is_fast_enough() -> None:
    start = time.perf_counter()
    fake_media.png_image(1024, 1024, "speed")
    assert time.perf_counter() - start < 0.5  # ~25 ms here; generous for slow CI machines


# ----------------------------------------------------------------------------- speech


async def test_speech_mp3_default(http: aiohttp.ClientSession) -> None:
    audio = await speech(http, "x" * 40, None)
    assert mp3_seconds(audio) == pytest.approx(2.0, abs=0.03)


async def test_speech_wav(http: aiohttp.ClientSession) -> None:
    audio = await speech(http, "x" * 40, "wav")
    with wave.open(io.BytesIO(audio)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
        assert w.getnframes() == 48000
        frames = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    assert 0 < max(samples) < 8000  # a soft tone, not silence, not clipping


async def test_speech_pcm(http: aiohttp.ClientSession) -> None:
    assert len(await speech(http, "x" * 40, "pcm")) == 2 * 48000


async def test_speech_flac(http: aiohttp.ClientSession) -> None:
    samples = flac_samples(await speech(http, "x" * 40, "flac"))
    assert len(samples) == 48000 and max(samples) > 0


async def test_speech_flac_long_uses_two_byte_frame_numbers() -> None:
    samples = flac_samples(fake_media.flac_audio(25.0))  # > 128 frames
    assert len(samples) == 25 * 24000


async def test_speech_opus(http: aiohttp.ClientSession) -> None:
    packets, granule = ogg_packets(await speech(http, "x" * 40, "opus"))
    head, tags, *audio = packets
    assert head[:8] == b"OpusHead" and head[8] == 1 and head[9] == 1
    (pre_skip,) = struct.unpack("<H", head[10:12])
    assert tags[:8] == b"OpusTags"
    assert (granule - pre_skip) / 48000 == pytest.approx(2.0)
    assert len(audio) * 960 >= granule and all(p[0] >> 3 == 31 for p in audio)


async def test_speech_aac(http: aiohttp.ClientSession) -> None:
    assert adts_seconds(await speech(http, "x" * 40, "aac")) == pytest.approx(2.0, abs=0.05)


async def test_speech_duration_grows_with_input_and_speed(http: aiohttp.ClientSession) -> None:
    short = len(await speech(http, "x" * 40, "pcm"))
    long = len(await speech(http, "x" * 200, "pcm"))
    fast = len(await speech(http, "x" * 200, "pcm", speed=2.0))
    tiny = len(await speech(http, "hi", "pcm"))
    huge = len(await speech(http, "x" * 4096, "pcm"))
    assert (short, long, fast, tiny, huge) == (96000, 480000, 240000, 24000, 30 * 48000)


@pytest.mark.parametrize(
    "body",
    [
        {"input": "x" * 4097, "voice": "alloy"},
        {"input": "hi", "voice": "alloy", "response_format": "ogg"},
        {"input": "hi"},
        {"voice": "alloy"},
        {"input": "hi", "voice": "alloy", "speed": 5},
    ],
)
async def test_speech_validation(http: aiohttp.ClientSession, body: dict[str, Any]) -> None:
    status, answer = await post_json(http, "/v1/audio/speech", {"model": "openai/tts-1", **body})
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"


# ----------------------------------------------------------------------------- transcription


def audio_form(data: bytes, filename: str, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"ID3\x04", "a.mp3"),
        (b"\xff\xfb\x90\x00", "a.mpga"),
        (b"RIFF\0\0\0\0WAVEfmt ", "a.wav"),
        (b"OggS\0\x02", "voice.ogg"),
        (b"fLaC\0\0\0\x22", "a.flac"),
        (b"\0\0\0\x20ftypM4A ", "a.m4a"),
        (b"\x1a\x45\xdf\xa3\x01", "a.webm"),
    ],
)
async def test_transcription_accepts_audio_by_magic(
    fake: FakeTokModel, http: aiohttp.ClientSession, head: bytes, name: str
) -> None:
    data = head + bytes(100)
    form = audio_form(data, name, model="openai/whisper-1", language="en")
    async with http.post("/v1/audio/transcriptions", data=form) as resp:
        assert resp.status == 200
        assert await resp.json() == {"text": stand_in_transcript(name, data, False)}
    rec = fake.requests[-1]
    assert rec.files == {"file": (name, len(data))}
    assert rec.form == {"model": "openai/whisper-1", "language": "en"}


async def test_translation_and_text_format(http: aiohttp.ClientSession) -> None:
    data = fake_media.wav_audio(0.5)
    form = audio_form(data, "talk.wav", model="openai/whisper-1", response_format="text")
    async with http.post("/v1/audio/translations", data=form) as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        text = await resp.text()
    assert text.strip() == stand_in_transcript("talk.wav", data, True)
    assert text.strip() == f"(stand-in English translation of talk.wav, {len(data)} bytes)"


async def test_transcription_rejects_non_audio(http: aiohttp.ClientSession) -> None:
    form = audio_form(b"%PDF-1.7 not audio", "doc.mp3", model="openai/whisper-1")
    async with http.post("/v1/audio/transcriptions", data=form) as resp:
        assert resp.status == 400
        assert await resp.json() == {
            "error": {"message": AUDIO_FORMAT_ERROR, "type": "invalid_request_error", "code": 400}
        }


@pytest.mark.parametrize("case", ["no file", "no model", "bad format", "json body"])
async def test_transcription_validation(http: aiohttp.ClientSession, case: str) -> None:
    wav = fake_media.wav_audio(0.5)
    form: aiohttp.FormData | None
    if case == "no file":
        form = aiohttp.FormData({"model": "openai/whisper-1"})
        form.add_field("note", b"x", filename="x.txt")  # keep it multipart
    elif case == "no model":
        form = audio_form(wav, "a.wav")
    elif case == "bad format":
        form = audio_form(wav, "a.wav", model="openai/whisper-1", response_format="docx")
    else:
        form = None
    kwargs: dict[str, Any] = {"data": form} if form is not None else {"json": {"file": "x"}}
    async with http.post("/v1/audio/transcriptions", **kwargs) as resp:
        assert resp.status == 400


# ----------------------------------------------------------------------------- embeddings, rerank


async def test_embeddings(http: aiohttp.ClientSession) -> None:
    body = {"model": "openai/text-embedding-3-small", "input": ["alpha", "beta", "alpha"]}
    status, answer = await post_json(http, "/v1/embeddings", body)
    assert status == 200 and answer["object"] == "list"
    assert answer["model"] == "openai/text-embedding-3-small"
    data = answer["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    assert all(
        d["object"] == "embedding" and len(d["embedding"]) == EMBEDDING_DIMENSIONS for d in data
    )
    assert data[0]["embedding"] == data[2]["embedding"] != data[1]["embedding"]
    assert math.fsum(v * v for v in data[1]["embedding"]) == pytest.approx(1.0, abs=1e-4)
    assert answer["usage"]["prompt_tokens"] == answer["usage"]["total_tokens"] > 0
    single = await post_json(http, "/v1/embeddings", {**body, "input": "alpha"})
    assert single[1]["data"][0]["embedding"] == data[0]["embedding"]
    b64 = await post_json(http, "/v1/embeddings", {**body, "encoding_format": "base64"})
    raw = base64.b64decode(b64[1]["data"][1]["embedding"])
    assert struct.unpack(f"<{EMBEDDING_DIMENSIONS}f", raw) == pytest.approx(
        data[1]["embedding"], abs=1e-6
    )
    bad = await post_json(http, "/v1/embeddings", {**body, "input": []})
    assert bad[0] == 400


def test_stand_in_embeddings_are_near_when_texts_share_words() -> None:
    def cosine(a: str, b: str, dimensions: int = EMBEDDING_DIMENSIONS) -> float:
        va, vb = stand_in_embedding(a, dimensions), stand_in_embedding(b, dimensions)
        return math.fsum(x * y for x, y in zip(va, vb, strict=True))

    deploy = "The deploy window is Tuesday afternoon"
    assert cosine(deploy, "when is the DEPLOY window?") > 0.4
    assert cosine(deploy, "lunch plans and coffee talk") < 0.2
    assert cosine(deploy, deploy) == pytest.approx(1.0, abs=1e-4)
    # Asked for fewer dimensions, the words are hashed into that many: still near.
    assert len(stand_in_embedding(deploy, 32)) == 32
    assert cosine(deploy, "deploy window", 32) > 0.4
    assert stand_in_embedding("!!!") != stand_in_embedding("???")  # no words: hashed whole


async def test_rerank(http: aiohttp.ClientSession) -> None:
    docs = ["The sky is blue.", "Cats chase mice.", "Blue cats are rare cats."]
    body = {"model": "cohere/rerank-english-v3.0", "query": "blue cats", "documents": docs}
    status, answer = await post_json(http, "/v1/rerank", body)
    assert status == 200
    assert answer["id"].startswith("rerank-") and answer["model"] == body["model"]
    results = answer["results"]
    assert [r["index"] for r in results] == [2, 0, 1]
    assert [r["document"] for r in results] == [{"text": docs[i]} for i in (2, 0, 1)]
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0
    top = (await post_json(http, "/v1/rerank", {**body, "top_n": 1}))[1]["results"]
    assert [r["index"] for r in top] == [2]
    assert (await post_json(http, "/v1/rerank", {**body, "query": ""}))[0] == 400


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", {"model": "x/unknown", "input": "a"}),
        ("/v1/rerank", {"model": "x/unknown", "query": "q", "documents": ["d"]}),
        ("/v1/audio/speech", {"model": "x/unknown", "input": "hi", "voice": "alloy"}),
        ("/v1/images/generations", {"model": "x/unknown", "prompt": "p"}),
    ],
)
async def test_unknown_models_are_404(
    http: aiohttp.ClientSession, path: str, body: dict[str, Any]
) -> None:
    status, answer = await post_json(http, path, body)
    assert status == 404
    assert answer == {
        "error": {
            "message": "The model 'x/unknown' does not exist.",
            "type": "not_found_error",
            "code": 404,
        }
    }


# ----------------------------------------------------------------------------- faults


CHAT_BODY = {"model": "openai/gpt-4o", "messages": [user("ping")]}


@pytest.mark.parametrize(
    ("status", "etype"),
    [
        (400, "invalid_request_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (502, "server_error"),
        (503, "server_error"),
    ],
)
async def test_fault_status_bodies(
    fake: FakeTokModel, http: aiohttp.ClientSession, status: int, etype: str
) -> None:
    fake.fail(Fault(status=status, retry_after=2))
    async with http.post(CHAT, json=CHAT_BODY) as resp:
        assert resp.status == status and resp.content_type == "application/json"
        assert resp.headers["Retry-After"] == "2"
        body = await resp.json()
    assert body["error"]["type"] == etype and body["error"]["code"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert (await post_json(http, CHAT, CHAT_BODY))[0] == 200  # times=1: used up


async def test_fault_403_and_401_bodies_are_the_documented_ones(
    fake: FakeTokModel, http: aiohttp.ClientSession
) -> None:
    fake.fail(Fault(status=403))
    fake.fail(Fault(status=401))
    assert await post_json(http, CHAT, CHAT_BODY) == (403, NO_CREDITS)
    assert await post_json(http, CHAT, CHAT_BODY) == (401, UNAUTHORIZED)
    fake.fail(Fault(status=400, message="Custom text."))
    assert (await post_json(http, CHAT, CHAT_BODY))[1]["error"]["message"] == "Custom text."


async def test_fault_times_path_and_clear(fake: FakeTokModel, http: aiohttp.ClientSession) -> None:
    fake.fail(Fault(status=500, times=2, path="/v1/embeddings"))
    assert (await post_json(http, CHAT, CHAT_BODY))[0] == 200  # other paths unaffected
    emb = {"model": "openai/text-embedding-3-small", "input": "a"}
    statuses = [(await post_json(http, "/v1/embeddings", emb))[0] for _ in range(3)]
    assert statuses == [500, 500, 200]
    fake.fail(Fault(status=502, times=-1))
    assert [(await post_json(http, CHAT, CHAT_BODY))[0] for _ in range(4)] == [502] * 4
    fake.clear()
    assert (await post_json(http, CHAT, CHAT_BODY))[0] == 200


async def test_fault_delay(fake: FakeTokModel, http: aiohttp.ClientSession) -> None:
    fake.fail(Fault(delay=0.3))
    start = time.monotonic()
    assert (await post_json(http, CHAT, CHAT_BODY))[0] == 200
    assert time.monotonic() - start >= 0.3


async def test_fault_malformed(fake: FakeTokModel, http: aiohttp.ClientSession) -> None:
    fake.fail(Fault(malformed=True))
    async with http.post(CHAT, json=CHAT_BODY) as resp:
        assert resp.status == 200
        with pytest.raises(ValueError):
            json.loads(await resp.read())


async def test_fault_cut_stream_drops_without_done(
    fake: FakeTokModel, http: aiohttp.ClientSession
) -> None:
    fake.fail(Fault(cut_after=3))
    received = b""
    async with http.post(CHAT, json={**CHAT_BODY, "stream": True}) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in resp.content.iter_any():
                received += chunk
    events = [e for e in received.decode().split("\n\n") if e]
    assert len(events) == 3 and b"[DONE]" not in received


async def test_fault_cut_plain_body_is_truncated(
    fake: FakeTokModel, http: aiohttp.ClientSession
) -> None:
    fake.fail(Fault(cut_after=20))
    async with http.post(CHAT, json=CHAT_BODY) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_chunk_delay_and_latency() -> None:
    async with (
        FakeTokModel(KEY, latency=0.1, chunk_delay=0.02) as fake,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        start = time.monotonic()
        async with http.post(fake.url + CHAT, json={**CHAT_BODY, "stream": True}) as resp:
            events = await read_sse(resp)
        assert time.monotonic() - start >= 0.1 + 0.02 * (len(events) - 1)


async def test_stop_is_quick_with_a_long_delay_pending(fake: FakeTokModel) -> None:
    fake.fail(Fault(delay=30))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http:

        async def call() -> None:
            async with http.post(fake.url + CHAT, json=CHAT_BODY) as resp:
                await resp.read()

        pending = asyncio.create_task(call())
        await asyncio.sleep(0.1)
        start = time.monotonic()
        await fake.stop()
        await asyncio.wait([pending], timeout=3)
        assert time.monotonic() - start < 3 and pending.done()
        if pending.exception() is not None:
            assert isinstance(pending.exception(), aiohttp.ClientError)


# ----------------------------------------------------------------------------- HTTP controls


async def test_http_controls(fake: FakeTokModel) -> None:
    async with aiohttp.ClientSession(base_url=fake.url) as anon:  # controls need no key
        async with anon.post("/_fake/faults", json={"status": 429, "retry_after": 1.5}) as r:
            assert r.status == 200 and (await r.json())["queued"] == 1
        async with anon.post("/_fake/faults", json={"status": 500, "times": -1, "path": "/x"}):
            pass
        async with anon.post("/_fake/faults", json={"bogus": 1}) as r:
            assert r.status == 400
        async with anon.post("/_fake/faults", json={"status": "500"}) as r:
            assert r.status == 400
        headers = {"Authorization": f"Bearer {KEY}"}
        async with anon.post(CHAT, json=CHAT_BODY, headers=headers) as r:
            assert r.status == 429 and r.headers["Retry-After"] == "1.5"
        async with anon.delete("/_fake/faults") as r:
            assert r.status == 200
        async with anon.post(CHAT, json=CHAT_BODY, headers=headers) as r:
            assert r.status == 200
        async with anon.get("/_fake/requests") as r:
            listed = await r.json()
        assert [x["path"] for x in listed] == [CHAT, CHAT]
        assert listed[0]["json"] == CHAT_BODY and listed[0]["authorized"] is True
        async with anon.delete("/_fake/requests") as r:
            assert r.status == 200
        async with anon.get("/_fake/requests") as r:
            assert await r.json() == []
    assert fake.requests == []


def test_fault_from_mapping_round_trip() -> None:
    fault = Fault(status=503, retry_after=2.0, delay=0.5, cut_after=4, times=-1, path="/v1/x")
    assert Fault.from_mapping({k: v for k, v in vars(fault).items()}) == fault
    with pytest.raises(ValueError):
        Fault(times=0)


def test_audio_magic_detection() -> None:
    for fmt in ("mp3", "opus", "flac", "wav", "aac"):
        assert fake_media.looks_like_audio(fake_media.speech_audio(fmt, 0.5))
    assert not fake_media.looks_like_audio(b"")
    assert not fake_media.looks_like_audio(b"\x89PNG\r\n\x1a\n")
    assert not fake_media.looks_like_audio(fake_media.pcm_audio(0.5))  # raw PCM has no magic


def test_model_ids_are_prefixed() -> None:
    assert all("/" in model for model in MODEL_IDS)

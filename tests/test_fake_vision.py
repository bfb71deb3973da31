"""The stand-in looks at pictures honestly: sizes from each format's header, colours from PNG
pixels (every filter type), OpenAI's token price, and OpenAI's refusals."""

from __future__ import annotations

import struct
import zlib

import aiohttp

from bot.tokmodel.fake import FakeTokModel
from bot.tokmodel.fake_vision import describe_image, image_tokens, solid_png
from bot.tokmodel.types import ChatImage
from tests.conftest import API_KEY


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, colour_type: int, rows: list[bytes], filters: list[int],
        palette: bytes = b"") -> bytes:  # fmt: skip
    """Encode raw rows with the given PNG filter per row (spec §9.2), to test the decoder."""
    bpp = {0: 1, 2: 3, 3: 1, 6: 4}[colour_type]
    previous = bytes(len(rows[0]))
    out = bytearray()
    for raw, kind in zip(rows, filters, strict=True):
        filtered = bytearray()
        for i, x in enumerate(raw):
            a = raw[i - bpp] if i >= bpp else 0
            b, c = previous[i], previous[i - bpp] if i >= bpp else 0
            p = a + b - c
            paeth = min((abs(p - a), 0, a), (abs(p - b), 1, b), (abs(p - c), 2, c))[2]
            pred = [0, a, b, (a + b) >> 1, paeth][kind]
            filtered.append((x - pred) & 0xFF)
        out += bytes([kind]) + filtered
        previous = raw
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    extra = chunk(b"PLTE", palette) if palette else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra
            + chunk(b"IDAT", zlib.compress(bytes(out))) + chunk(b"IEND", b""))  # fmt: skip


def test_png_colours_are_read_through_every_filter() -> None:
    assert describe_image(solid_png(1024, 1024, (30, 60, 220))) == "a 1024×1024 PNG, mostly blue"
    # A gradient of noise on a yellow field, one filter type per row.
    rows = [bytes((240, 220, 30 + (i * 7 + r) % 20) * 1)[:3] * 8 for r in range(5) for i in [r]]
    for kind in range(5):
        assert describe_image(png(8, 5, 2, rows, [kind] * 5)) == "a 8×5 PNG, mostly yellow"
    assert describe_image(png(8, 5, 2, rows, [0, 1, 2, 3, 4])) == "a 8×5 PNG, mostly yellow"
    grey = png(4, 2, 0, [bytes([250] * 4)] * 2, [0, 2])
    assert describe_image(grey) == "a 4×2 PNG, mostly white"
    paletted = png(4, 1, 3, [bytes([1, 1, 1, 0])], [0], palette=bytes((0, 0, 0, 220, 30, 30)))
    assert describe_image(paletted) == "a 4×1 PNG, mostly red"
    spread = solid_png(2000, 100, (0, 0, 0))  # rows readable alone: sampled all over
    assert describe_image(spread) == "a 2000×100 PNG, mostly black"
    chained = png(1000, 100, 0, [bytes([10] * 1000)] * 100, [2] * 100)  # each needs the last
    assert describe_image(chained) == "a 1000×100 PNG, mostly black at the top"


def test_other_formats_report_their_size_from_the_header() -> None:
    jpeg = b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 4) + b"JF"
    jpeg += b"\xff\xc0" + struct.pack(">HBHH", 17, 8, 480, 640) + bytes(12)
    assert describe_image(jpeg) == "a 640×480 JPEG"
    assert describe_image(b"GIF89a" + struct.pack("<HH", 32, 16) + bytes(8)) == "a 32×16 GIF"
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (99).to_bytes(3, "little")
    webp = b"RIFF" + struct.pack("<I", 30) + b"WEBP" + vp8x + (49).to_bytes(3, "little")
    assert describe_image(webp) == "a 100×50 WebP"
    assert describe_image(b"<html>") == "6 bytes that are not a PNG, JPEG, WebP or GIF picture"


def test_image_tokens_follow_openais_high_detail_price() -> None:
    assert image_tokens(solid_png(1024, 1024, (0, 0, 0))) == 765
    assert image_tokens(solid_png(2048, 4096, (0, 0, 0))) == 1105  # OpenAI's worked example
    assert image_tokens(solid_png(100, 100, (0, 0, 0))) == 255
    assert image_tokens(b"not a picture") == 765


async def test_a_text_only_model_refuses_pictures_as_openai_does(fake: FakeTokModel) -> None:
    fake.text_only_models.add("mistral/mistral-large-latest")
    picture = ChatImage("image/png", solid_png(2, 2, (0, 0, 0)))
    parts = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": ""}}]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def ask(model: str, url: str) -> tuple[int, dict[str, object]]:
            parts[1]["image_url"] = {"url": url}
            body = {"model": model, "messages": [{"role": "user", "content": parts}]}
            async with session.post(f"{fake.url}/v1/chat/completions", json=body) as response:
                return response.status, await response.json()

        status, body = await ask("mistral/mistral-large-latest", picture.data_url)
        assert status == 400 and body["error"] == {
            "message": "Invalid content type. image_url is only supported by certain models.",
            "type": "invalid_request_error",
            "code": 400,
            "param": "messages.[0].content.[1].type",
        }
        status, body = await ask("openai/gpt-4o", "data:image/png;base64,PGh0bWw+")
        assert status == 400 and "unsupported image" in str(body)
        status, body = await ask("openai/gpt-4o", picture.data_url)
        assert status == 200 and "a 2×2 PNG, mostly black" in str(body)

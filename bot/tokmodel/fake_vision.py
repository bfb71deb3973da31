"""How the TokModel stand-in "looks" at a picture: honestly, from its bytes.

The size comes from each format's header (PNG IHDR, GIF logical screen, JPEG SOFn, WebP VP8/VP8L/
VP8X), the dominant colour from the pixels where that is cheap: PNG is decoded here with zlib
(8-bit greyscale/RGB/RGBA/palette; PNG spec §7-9), up to a pixel budget, so a big picture costs
the stand-in milliseconds, not seconds. Pure standard library, like `fake_media`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import zlib
from collections import Counter
from typing import Any, Final

from bot.tokmodel.images import image_type

#: Pixels looked at for the colour; beyond it a PNG's colour comes from its top rows only.
PIXEL_BUDGET: Final = 64 * 1024
#: Largest decompressed PNG looked at for its colour (a 2048×2048 RGBA picture is 16 MB).
_MAX_INFLATED: Final = 64 * 1024 * 1024
#: Pixels sampled from the decoded rows (evenly spaced) to name the colour.
_SAMPLES: Final = 4096

_FORMATS: Final = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/webp": "WebP",
    "image/gif": "GIF",
}

# Named colours as (r, g, b); the nearest one names a pixel.
_PALETTE: Final = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (240, 220, 30),
    "green": (30, 170, 50),
    "cyan": (0, 200, 220),
    "blue": (30, 60, 220),
    "purple": (130, 40, 170),
    "pink": (250, 140, 190),
    "brown": (120, 70, 30),
}


def decode_data_url(url: str) -> tuple[str, bytes] | None:
    """(MIME type, bytes) of a base64 `data:` URL; None for anything else."""
    if not url.startswith("data:"):
        return None
    header, sep, payload = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    try:
        return header.removesuffix(";base64"), base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


def images_in(body: dict[str, Any] | None) -> list[bytes]:
    """The bytes of every inline picture in a chat request body, in order (for tests that
    compare what reached TokModel with what was attached)."""
    found: list[bytes] = []
    for message in (body or {}).get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            url = (part.get("image_url") or {}).get("url") if isinstance(part, dict) else None
            decoded = decode_data_url(url) if isinstance(url, str) else None
            if decoded is not None:
                found.append(decoded[1])
    return found


def describe_image(data: bytes) -> str:
    """E.g. "a 1024×1024 PNG, mostly blue"; what is not a picture says so."""
    kind = image_type(data)
    if kind is None:
        return f"{len(data):,} bytes that are not a PNG, JPEG, WebP or GIF picture"
    size = _size(kind, data)
    shape = f"{size[0]}×{size[1]} " if size else ""
    text = f"a {shape}{_FORMATS[kind]}"
    colour = _png_colour(data) if kind == "image/png" else None
    return f"{text}, mostly {colour}" if colour else text


def image_tokens(data: bytes) -> int:
    """What OpenAI charges for a picture at high detail: scaled to fit 2048×2048, then its short
    side to 768, it costs 85 tokens plus 170 a 512-pixel tile (765 for 1024×1024)."""
    kind = image_type(data)
    size = _size(kind, data) if kind else None
    if not size or 0 in size:
        return 765
    width, height = float(size[0]), float(size[1])
    if max(width, height) > 2048:
        width, height = (width * 2048 / max(width, height), height * 2048 / max(width, height))
    if min(width, height) > 768:
        width, height = (width * 768 / min(width, height), height * 768 / min(width, height))
    tiles = -(-int(width) // 512) * -(-int(height) // 512)
    return 85 + 170 * tiles


def _size(kind: str, data: bytes) -> tuple[int, int] | None:
    try:
        if kind == "image/png":
            return struct.unpack(">II", data[16:24])
        if kind == "image/gif":
            return struct.unpack("<HH", data[6:10])
        if kind == "image/jpeg":
            return _jpeg_size(data)
        return _webp_size(data)
    except struct.error:
        return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """From the first SOFn segment (ITU T.81 B.2.2): height, then width."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """RFC 9649: the first chunk is VP8 (lossy), VP8L (lossless) or VP8X (extended)."""
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _png_colour(data: bytes) -> str | None:
    """The most common named colour among sampled pixels of an 8-bit, non-interlaced PNG."""
    try:
        width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
        chunks = _png_chunks(data)
    except (struct.error, ValueError):
        return None
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour_type)
    if depth != 8 or interlace != 0 or channels is None or width == 0:
        return None
    palette = chunks.get(b"PLTE", b"")
    stride = width * channels
    if height * (stride + 1) > _MAX_INFLATED:
        return None
    try:
        raw = zlib.decompress(chunks.get(b"IDAT", b""))
    except zlib.error:
        return None
    pixels, partial = _sampled_rows(raw, height, stride, channels)
    count = len(pixels) // channels
    if count == 0:
        return None
    step = max(1, count // _SAMPLES)
    names: Counter[str] = Counter()
    for index in range(0, count, step):
        at = index * channels
        if colour_type == 3:
            entry = pixels[at] * 3
            rgb = tuple(palette[entry : entry + 3]) if entry + 3 <= len(palette) else (0, 0, 0)
        elif colour_type in (0, 4):
            rgb = (pixels[at],) * 3
        else:
            rgb = tuple(pixels[at : at + 3])
        names[_nearest(rgb)] += 1
    colour = names.most_common(1)[0][0]
    return f"{colour} at the top" if partial else colour


def _sampled_rows(raw: bytes, height: int, stride: int, bpp: int) -> tuple[bytes, bool]:
    """Pixels of rows spread over the whole picture when those rows can be read on their own
    (filter None or Sub, as simple encoders write); else of the top rows, within the pixel
    budget (Up, Average and Paeth depend on the row above). True: only the top was read."""
    budget_rows = max(1, min(height, PIXEL_BUDGET // max(1, stride // bpp)))
    step = max(1, height // budget_rows)
    spread = range(0, height, step)
    if all(raw[r * (stride + 1)] in (0, 1) for r in spread if r * (stride + 1) < len(raw)):
        rows = [_unfiltered(raw[r * (stride + 1) :], 1, stride, bpp) for r in spread]
        return b"".join(rows), False
    return _unfiltered(raw, budget_rows, stride, bpp), budget_rows < height


def _png_chunks(data: bytes) -> dict[bytes, bytes]:
    """Chunk type -> data (IDAT chunks joined), up to IEND."""
    chunks: dict[bytes, bytes] = {}
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        chunks[kind] = chunks.get(kind, b"") + body if kind == b"IDAT" else body
        if kind == b"IEND":
            break
        at += 12 + length
    return chunks


def _unfiltered(raw: bytes, rows: int, stride: int, bpp: int) -> bytes:
    """Undo PNG's per-row filters (spec §9.2) for the rows present in `raw`."""
    out = bytearray()
    previous = bytearray(stride)
    for r in range(rows):
        start = r * (stride + 1)
        if start + 1 + stride > len(raw):
            break
        kind, row = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 0xFF
        elif kind == 2:
            row = bytearray((a + b) & 0xFF for a, b in zip(row, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = row[i - bpp] if i >= bpp else 0
                b, c = previous[i], previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                row[i] = (row[i] + pred) & 0xFF
        out += row
        previous = row
    return bytes(out)


def _nearest(rgb: tuple[int, ...]) -> str:
    r, g, b = rgb[0], rgb[1], rgb[2]
    return min(
        _PALETTE,
        key=lambda n: (
            (r - _PALETTE[n][0]) ** 2 + (g - _PALETTE[n][1]) ** 2 + (b - _PALETTE[n][2]) ** 2
        ),
    )


def solid_png(width: int, height: int, rgb: tuple[int, int, int], *, noise: int = 0) -> bytes:
    """A PNG of one colour (for tests and benchmarks). `noise` > 0 adds that many bytes of
    incompressible data in a private chunk, to make a picture of a given size quickly."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    extra = chunk(b"tEXt", b"noise\x00" + _noise(noise)) if noise else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + extra
        + chunk(b"IDAT", zlib.compress(row * height, 6))
        + chunk(b"IEND", b"")
    )


def _noise(size: int) -> bytes:
    """Deterministic bytes that do not compress (a keyed hash stream), printable for tEXt."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).hexdigest().encode("ascii")
        counter += 1
    return bytes(out[:size])

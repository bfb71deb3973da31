"""What an image TokModel sent really is, by its first bytes: only the formats every chat
platform shows inline are posted (PNG, JPEG, WebP, GIF); anything else (an HTML login page behind
an expired URL, a truncated body) is refused before it reaches a channel."""

from __future__ import annotations

from typing import Final

#: Beyond this an image is refused without being read whole. DALL·E 3's largest PNGs are a few
#: MB; 20 MiB bounds memory per download while leaving room for bigger models.
MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024

# Magic numbers: PNG spec §5.2, JPEG SOI + marker (ITU T.81), GIF87a/89a header,
# WebP = RIFF container with form type "WEBP" (RFC 9649 §2).
_EXTENSIONS: Final = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
}


def image_type(data: bytes) -> str | None:
    """The MIME type of a PNG, JPEG, WebP or GIF image; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return None


def extension_for(content_type: str) -> str:
    return _EXTENSIONS.get(content_type, "png")

"""Recognising files by their first bytes and names: what is audio, what is a PNG, what is a
login page pretending to be a download."""

from __future__ import annotations

from pathlib import PurePath

from bot.domain import Attachment

AUDIO_EXTENSIONS = frozenset(
    {"mp3", "mpga", "mpeg", "wav", "ogg", "oga", "opus", "m4a", "mp4", "webm", "flac", "aac"}
)
IMAGE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "webp"})
# Containers that often hold only sound (voice clips are sent as mp4/webm by some clients).
_AUDIO_VIDEO_TYPES = frozenset({"video/mp4", "video/webm", "video/ogg"})


def extension(filename: str) -> str:
    return PurePath(filename).suffix.lower().lstrip(".")


def is_audio_attachment(attachment: Attachment) -> bool:
    ctype = (attachment.content_type or "").split(";")[0].strip().lower()
    if attachment.is_voice or ctype.startswith("audio/") or ctype in _AUDIO_VIDEO_TYPES:
        return True
    return not ctype and extension(attachment.filename) in AUDIO_EXTENSIONS


def is_image_attachment(attachment: Attachment) -> bool:
    ctype = (attachment.content_type or "").split(";")[0].strip().lower()
    if ctype.startswith("image/"):
        return True
    return not ctype and extension(attachment.filename) in IMAGE_EXTENSIONS


def looks_like_audio(data: bytes) -> bool:
    """True for the containers TokModel's transcription accepts (by magic bytes)."""
    head = data[:16]
    if head.startswith((b"ID3", b"OggS", b"fLaC", b"\x1a\x45\xdf\xa3")):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return True
    if head[4:8] == b"ftyp":
        return True
    # MPEG audio frame sync (mp3) or ADTS (aac): 11 or 12 set bits.
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


def looks_like_html(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head[:200]


def is_png(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n")

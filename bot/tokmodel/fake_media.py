"""Real, small media files for the fake TokModel: PNG images and audio in every TTS format.

Everything here is pure standard library (zlib, struct, wave, hashlib) and deterministic, so the
fake's answers can be asserted byte for byte and still open in real image viewers and players.
Speed matters (tests and benchmarks call these a lot), so images are built row by row with
slice assignment and audio from one repeated tone period, never with per-pixel/per-sample loops.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import sys
import wave
import zlib
from array import array
from collections.abc import Iterable
from functools import cache, lru_cache

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SAMPLE_RATE = 24_000  # what OpenAI-style TTS produces for wav/pcm
_TONE_PERIOD = 64  # samples; 375 Hz at 24 kHz, and it divides the FLAC block size
_BEEP = 4096  # samples of tone, then as many of silence: a "speech-like" on/off pattern
_FLAC_BLOCK = 4096

AUDIO_CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


# --------------------------------------------------------------------------- PNG


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_image(width: int, height: int, seed: bytes | str) -> bytes:
    """A valid 8-bit RGB PNG: a colour gradient whose colours come from a hash of `seed`."""
    if width < 1 or height < 1:
        raise ValueError("image dimensions must be positive")
    raw_seed = seed.encode("utf-8") if isinstance(seed, str) else seed
    h = hashlib.sha256(raw_seed).digest()
    r0, r1, b0, b1, g0, g1 = h[0], h[1], h[2], h[3], h[4], h[5]
    wspan = max(1, width - 1)
    hspan = max(1, height - 1)
    # Red and blue run left to right, green top to bottom: one base row, then only green changes.
    row = bytearray(width * 3)
    row[0::3] = bytes((r0 + (r1 - r0) * x // wspan) & 0xFF for x in range(width))
    row[2::3] = bytes((b0 + (b1 - b0) * x // wspan) & 0xFF for x in range(width))
    rows: list[bytes] = []
    for y in range(height):
        row[1::3] = bytes(((g0 + (g1 - g0) * y // hspan) & 0xFF,)) * width
        rows.append(b"\x00")  # filter type 0 (None) for every scanline
        rows.append(bytes(row))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, truecolour RGB
    idat = zlib.compress(b"".join(rows), 6)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def is_png(data: bytes) -> bool:
    """True when `data` starts with the PNG signature and an IHDR chunk."""
    return data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"


# --------------------------------------------------------------------------- PCM source


@cache
def _tone_period() -> array[int]:
    amplitude = 3000  # about -21 dBFS: a soft beep
    return array(
        "h",
        (round(amplitude * math.sin(2 * math.pi * i / _TONE_PERIOD)) for i in range(_TONE_PERIOD)),
    )


def pcm_samples(seconds: float) -> array[int]:
    """Mono 16-bit samples at 24 kHz: soft beeps (tone, silence, tone …) lasting `seconds`."""
    total = max(1, round(seconds * SAMPLE_RATE))
    beep = _tone_period() * (_BEEP // _TONE_PERIOD)
    cycle = beep + array("h", bytes(2 * _BEEP))
    out = cycle * (total // len(cycle) + 1)
    del out[total:]
    return out


def _le_bytes(samples: array[int]) -> bytes:
    if sys.byteorder == "little":
        return samples.tobytes()
    swapped = array("h", samples)
    swapped.byteswap()
    return swapped.tobytes()


def _be_bytes(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        return samples.tobytes()
    swapped = array("h", samples)
    swapped.byteswap()
    return swapped.tobytes()


def pcm_audio(seconds: float) -> bytes:
    """Raw signed 16-bit little-endian mono PCM at 24 kHz (TTS `pcm`)."""
    return _le_bytes(pcm_samples(seconds))


def wav_audio(seconds: float) -> bytes:
    """A RIFF/WAVE file, PCM 16-bit mono 24 kHz."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(_le_bytes(pcm_samples(seconds)))
    return buf.getvalue()


# --------------------------------------------------------------------------- MP3


# MPEG-1 Layer III, no CRC, 32 kbit/s, 48 kHz, mono: 144 * 32000 / 48000 = 96 bytes a frame.
_MP3_HEADER = bytes((0xFF, 0xFB, 0x14, 0xC0))
_MP3_FRAME_BYTES = 96
_MP3_FRAME_SAMPLES = 1152
_MP3_RATE = 48_000


def mp3_audio(seconds: float) -> bytes:
    """MPEG-1 Layer III frames of digital silence.

    Side information all zero means no main data (part2_3_length = 0), which decoders play as
    silence; the rest of each frame is ancillary zero bytes.
    """
    frames = max(1, math.ceil(seconds * _MP3_RATE / _MP3_FRAME_SAMPLES))
    frame = _MP3_HEADER + bytes(_MP3_FRAME_BYTES - len(_MP3_HEADER))
    return frame * frames


# --------------------------------------------------------------------------- AAC (ADTS)


# One AAC-LC raw_data_block for mono silence: a single_channel_element with max_sfb = 0
# (global_gain 160, long window, no sections, no pulse/TNS/gain control), then ID_END.
_AAC_SILENT_BLOCK = bytes((0x01, 0x40, 0x20, 0x07))
_AAC_FRAME_SAMPLES = 1024
_ADTS_RATE_INDEX = {96000: 0, 88200: 1, 64000: 2, 48000: 3, 44100: 4, 32000: 5, 24000: 6}


def _adts_header(frame_length: int, rate: int) -> bytes:
    bits = 0xFFF  # syncword
    bits = (bits << 1) | 0  # ID: MPEG-4
    bits = (bits << 2) | 0  # layer
    bits = (bits << 1) | 1  # protection_absent: no CRC
    bits = (bits << 2) | 1  # profile: AAC LC (object type 2, minus 1)
    bits = (bits << 4) | _ADTS_RATE_INDEX[rate]
    bits = (bits << 1) | 0  # private bit
    bits = (bits << 3) | 1  # channel configuration: mono
    bits = (bits << 4) | 0  # original/copy, home, copyright id bit, copyright id start
    bits = (bits << 13) | frame_length
    bits = (bits << 11) | 0x7FF  # buffer fullness: VBR
    bits = (bits << 2) | 0  # one raw data block in the frame
    return bits.to_bytes(7, "big")


def aac_audio(seconds: float) -> bytes:
    """ADTS-framed AAC-LC, mono 24 kHz, of digital silence."""
    frames = max(1, math.ceil(seconds * SAMPLE_RATE / _AAC_FRAME_SAMPLES))
    frame = _adts_header(7 + len(_AAC_SILENT_BLOCK), SAMPLE_RATE) + _AAC_SILENT_BLOCK
    return frame * frames


# --------------------------------------------------------------------------- CRCs


@cache
def _crc_table(width: int, poly: int) -> tuple[int, ...]:
    top = 1 << (width - 1)
    mask = (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) if crc & top else (crc << 1)
        table.append(crc & mask)
    return tuple(table)


def _crc_msb_first(data: bytes, width: int, poly: int) -> int:
    """Non-reflected CRC with zero init and no final xor (FLAC's CRC-8/16, Ogg's CRC-32)."""
    table = _crc_table(width, poly)
    shift = width - 8
    mask = (1 << width) - 1
    crc = 0
    for b in data:
        crc = ((crc << 8) & mask) ^ table[((crc >> shift) ^ b) & 0xFF]
    return crc


def crc8_flac(data: bytes) -> int:
    """FLAC frame-header CRC-8 (polynomial x^8 + x^2 + x + 1)."""
    return _crc_msb_first(data, 8, 0x07)


def crc16_flac(data: bytes) -> int:
    """FLAC frame CRC-16 (polynomial x^16 + x^15 + x^2 + 1)."""
    return _crc_msb_first(data, 16, 0x8005)


def crc32_ogg(data: bytes) -> int:
    """Ogg page checksum (polynomial 0x04C11DB7, zero init, no reflection, no final xor)."""
    return _crc_msb_first(data, 32, 0x04C11DB7)


def _gf2_mulmod(a: int, b: int, poly: int, width: int) -> int:
    """a * b mod (x^width + poly) over GF(2)."""
    top = 1 << width
    full = top | poly
    result = 0
    while b:
        if b & 1:
            result ^= a
        b >>= 1
        a <<= 1
        if a & top:
            a ^= full
    return result


@cache
def _x_pow_mod(bits: int, poly: int, width: int) -> int:
    """x^bits mod (x^width + poly), by square-and-multiply."""
    result, base, e = 1, 2, bits
    while e:
        if e & 1:
            result = _gf2_mulmod(result, base, poly, width)
        base = _gf2_mulmod(base, base, poly, width)
        e >>= 1
    return result


@lru_cache(maxsize=16)
def _crc16_of_block(block: bytes) -> int:
    return crc16_flac(block)


def _crc16_continue(state: int, block: bytes) -> int:
    """CRC-16 register after feeding `block` from `state`.

    This CRC is linear: crc(state, m) = state * x^(8*len(m)) mod P  xor  crc(0, m). Every tone
    block of the stand-in audio is the same bytes, so its crc(0, m) is computed once and each
    frame only pays for the cheap multiplication.
    """
    shifted = _gf2_mulmod(state, _x_pow_mod(8 * len(block), 0x8005, 16), 0x8005, 16)
    return shifted ^ _crc16_of_block(block)


# --------------------------------------------------------------------------- FLAC


def _utf8_number(n: int) -> bytes:
    """FLAC's UTF-8-like coding of the frame number."""
    if n < 0x80:
        return bytes((n,))
    for nbytes in range(2, 8):
        if n < 1 << (5 * nbytes + 1):
            break
    else:
        raise ValueError("frame number too large")
    first = ((0xFF << (8 - nbytes)) & 0xFF) | (n >> (6 * (nbytes - 1)))
    rest = bytes(0x80 | ((n >> (6 * i)) & 0x3F) for i in range(nbytes - 2, -1, -1))
    return bytes((first,)) + rest


def _flac_frame(number: int, block: array[int]) -> bytes:
    size = len(block)
    if size == _FLAC_BLOCK:
        size_code, size_extra = 0b1100, b""  # 4096
    elif size <= 256:
        size_code, size_extra = 0b0110, bytes((size - 1,))
    else:
        size_code, size_extra = 0b0111, struct.pack(">H", size - 1)
    header = (
        b"\xff\xf8"  # sync code, fixed-blocksize stream
        + bytes((size_code << 4 | 0b0111,))  # block size, 24 kHz
        + bytes((0b0000_100_0,))  # mono, 16 bits per sample
        + _utf8_number(number)
        + size_extra
    )
    header += bytes((crc8_flac(header),))
    first = block[0]
    if block.count(first) == size:
        body = b"\x00" + struct.pack(">h", first)  # CONSTANT subframe
    else:
        body = b"\x02" + _be_bytes(block)  # VERBATIM subframe
    crc = _crc16_continue(crc16_flac(header), body)
    return header + body + struct.pack(">H", crc)


def flac_audio(seconds: float) -> bytes:
    """A FLAC stream (STREAMINFO + constant/verbatim frames), 16-bit mono 24 kHz."""
    samples = pcm_samples(seconds)
    total = len(samples)
    frames = [
        _flac_frame(i, samples[start : start + _FLAC_BLOCK])
        for i, start in enumerate(range(0, total, _FLAC_BLOCK))
    ]
    block = min(_FLAC_BLOCK, total)
    sizes = [len(f) for f in frames]
    info = struct.pack(">HH", block, block)
    info += min(sizes).to_bytes(3, "big") + max(sizes).to_bytes(3, "big")
    # sample rate (20 bits), channels - 1 (3), bits per sample - 1 (5), total samples (36)
    info += ((SAMPLE_RATE << 44) | (0 << 41) | (15 << 36) | total).to_bytes(8, "big")
    info += hashlib.md5(_le_bytes(samples)).digest()  # MD5 of the decoded audio
    streaminfo = bytes((0x80,)) + len(info).to_bytes(3, "big") + info  # last block, type 0
    return b"fLaC" + streaminfo + b"".join(frames)


# --------------------------------------------------------------------------- Ogg Opus


_OPUS_SILENCE = b"\xf8\xff\xfe"  # CELT-only fullband 20 ms frame that decodes to silence
_OPUS_FRAME_48K = 960
_OPUS_PRE_SKIP = 312
_OGG_SERIAL = 0x746F6B62  # "tokb"


def _ogg_page(kind: int, granule: int, seq: int, packets: Iterable[bytes]) -> bytes:
    lacing = bytearray()
    data = bytearray()
    for packet in packets:
        lacing += b"\xff" * (len(packet) // 255) + bytes((len(packet) % 255,))
        data += packet
    if len(lacing) > 255:
        raise ValueError("too many segments for one Ogg page")
    page = bytearray(
        b"OggS"
        + struct.pack("<BBqIII", 0, kind, granule, _OGG_SERIAL, seq, 0)
        + bytes((len(lacing),))
        + lacing
        + data
    )
    page[22:26] = struct.pack("<I", crc32_ogg(bytes(page)))
    return bytes(page)


def opus_audio(seconds: float) -> bytes:
    """An Ogg Opus file (OpusHead, OpusTags, then 20 ms silent frames), mono."""
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, _OPUS_PRE_SKIP, SAMPLE_RATE, 0, 0)
    vendor = b"tokbot fake TokModel"
    tags = b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
    pages = [_ogg_page(0x02, 0, 0, [head]), _ogg_page(0x00, 0, 1, [tags])]
    length_48k = max(1, round(seconds * 48_000))
    packets = math.ceil((_OPUS_PRE_SKIP + length_48k) / _OPUS_FRAME_48K)
    per_page = 50  # one second of audio per page
    seq = 2
    for start in range(0, packets, per_page):
        count = min(per_page, packets - start)
        last = start + count >= packets
        # The last page's granule trims the padding of the final frame (end trimming).
        granule = _OPUS_PRE_SKIP + length_48k if last else (start + count) * _OPUS_FRAME_48K
        pages.append(_ogg_page(0x04 if last else 0x00, granule, seq, [_OPUS_SILENCE] * count))
        seq += 1
    return b"".join(pages)


# --------------------------------------------------------------------------- dispatch


def speech_audio(fmt: str, seconds: float) -> bytes:
    """Audio bytes of `seconds` length in TTS response format `fmt` (see AUDIO_CONTENT_TYPES)."""
    makers = {
        "mp3": mp3_audio,
        "opus": opus_audio,
        "aac": aac_audio,
        "flac": flac_audio,
        "wav": wav_audio,
        "pcm": pcm_audio,
    }
    if fmt not in makers:
        raise ValueError(f"unknown audio format {fmt!r}")
    return makers[fmt](seconds)


def looks_like_audio(data: bytes) -> bool:
    """True when the magic bytes are those of a format the transcription endpoints accept."""
    if data.startswith((b"ID3", b"OggS", b"fLaC", b"\x1a\x45\xdf\xa3")):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return True
    if data[4:8] == b"ftyp":  # mp4 / m4a
        return True
    # MPEG audio frame sync (11 set bits); also matches ADTS AAC.
    return len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0

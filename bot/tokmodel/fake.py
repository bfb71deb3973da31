"""A stand-in TokModel: a real aiohttp server that answers like the gateway.

It speaks the OpenAI-compatible shapes TokModel documents, with TokModel's documented error bodies,
so the real client can be exercised over loopback by tests, benchmarks, `tokbot fake-tokmodel` and
`tokbot console --offline` with no key and no network. Answers are deterministic (the reply text is
`stand_in_reply(messages)`), media are real files (see `fake_media`), every request is recorded, and
failures can be injected with `fail(Fault(...))` or over HTTP under `/_fake/`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import re
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final

from aiohttp import BodyPartReader, web

from bot.tokmodel import fake_media, fake_vision
from bot.tokmodel.images import image_type
from bot.tokmodel.kinds import model_kind
from bot.tokmodel.types import ChatMessage

#: Pending connections queued by the kernel, as many as a real API takes in a burst.
LISTEN_BACKLOG = 1024

logger = logging.getLogger("tokbot.tokmodel.fake")

#: (model id, created) pairs served by GET /v1beta/models; owned_by is the provider prefix.
MODELS: Final[tuple[tuple[str, int], ...]] = (
    ("openai/gpt-4o", 1715367049),
    ("openai/gpt-4o-mini", 1721172741),
    ("anthropic/claude-sonnet-4-5", 1759104000),
    ("anthropic/claude-opus-4-5", 1763942400),
    ("google/gemini-2.0-flash", 1738713600),
    ("mistral/mistral-large-latest", 1731974400),
    ("openai/dall-e-3", 1698785189),
    ("openai/tts-1", 1681940951),
    ("openai/tts-1-hd", 1699046015),
    ("openai/whisper-1", 1677532384),
    ("openai/text-embedding-3-small", 1705948997),
    ("cohere/rerank-english-v3.0", 1712016000),
)
MODEL_IDS: Final[frozenset[str]] = frozenset(model for model, _ in MODELS)
#: Chat models of MODELS that take pictures (as their providers document); the rest take text.
VISION_MODELS: Final = frozenset(
    {
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
        "anthropic/claude-sonnet-4-5",
        "anthropic/claude-opus-4-5",
        "google/gemini-2.0-flash",
    }
)
IMAGE_SIZES: Final[frozenset[str]] = frozenset(
    {"256x256", "512x512", "1024x1024", "1792x1024", "1024x1792"}
)
#: The stand-in's embedding length (`dimensions` asks for fewer). Bag-of-words vectors want
#: room: with fewer buckets, unrelated words share one more often.
EMBEDDING_DIMENSIONS: Final = 256
#: Tokens charged for a picture whose size is unknown (OpenAI: a 1024×1024 one, high detail).
IMAGE_TOKENS: Final = 765
#: OpenAI's answer to a picture sent to a model that takes only text (400, with this `param`).
NO_IMAGES_MESSAGE: Final = "Invalid content type. image_url is only supported by certain models."
TTS_MAX_INPUT: Final = 4096
AUDIO_FORMAT_ERROR: Final = (
    "Invalid file format. Supported formats: flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, wav, webm"
)

UNAUTHORIZED_MESSAGE: Final = "Invalid or missing API key."
CREDITS_MESSAGE: Final = "Insufficient credits. Please top up your account balance."
_ERROR_TYPES: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "authorization_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_DEFAULT_MESSAGES: Final[dict[int, str]] = {
    400: "The request was invalid.",
    401: UNAUTHORIZED_MESSAGE,
    403: CREDITS_MESSAGE,
    404: "The requested resource was not found.",
    429: "Rate limit exceeded. Please slow down and retry later.",
    500: "The server had an error while processing your request.",
    502: "Bad gateway: the upstream provider returned an invalid response.",
    503: "The service is temporarily unavailable. Please retry later.",
    504: "Gateway timeout: the upstream provider did not answer in time.",
}


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class Fault:
    """A failure to inject into the next `times` matching requests (`times=-1`: until cleared).

    `status` answers that status with TokModel's error body (plus `Retry-After` when
    `retry_after` is set); `delay` sleeps first; `cut_after=N` sends N SSE events of a streamed
    chat (or N bytes of any other body) and then drops the connection; `malformed` answers 200
    with a body that is not JSON; `path` restricts the fault to one endpoint path (or, ending
    in `*`, to every path under a prefix, e.g. "/_fake/files/*" for image downloads).
    """

    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    cut_after: int | None = None
    malformed: bool = False
    times: int = 1
    path: str | None = None
    message: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Fault:
        """Build a Fault from JSON (as sent to `POST /_fake/faults`), checking every field."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")

        def opt(name: str, kinds: tuple[type, ...]) -> Any:
            value = data.get(name)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"fault field {name!r} has the wrong type")
            return value

        malformed = data.get("malformed", False)
        if not isinstance(malformed, bool):
            raise ValueError("fault field 'malformed' must be a boolean")
        times = opt("times", (int,))
        delay = opt("delay", (int, float))
        retry_after = opt("retry_after", (int, float))
        return cls(
            status=opt("status", (int,)),
            retry_after=float(retry_after) if retry_after is not None else None,
            delay=float(delay) if delay is not None else 0.0,
            cut_after=opt("cut_after", (int,)),
            malformed=malformed,
            times=times if times is not None else 1,
            path=opt("path", (str,)),
            message=opt("message", (str,)),
        )

    def __post_init__(self) -> None:
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("fault status must be an HTTP status code")
        if self.times == 0 or self.times < -1:
            raise ValueError("fault times must be positive, or -1 for 'until cleared'")
        if self.delay < 0 or (self.cut_after is not None and self.cut_after < 0):
            raise ValueError("fault delay and cut_after must not be negative")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received. Header values (and so the API key) are never kept."""

    method: str
    path: str
    json: dict[str, Any] | None
    form: dict[str, str]
    files: dict[str, tuple[str, int]]  # multipart field -> (file name, size in bytes)
    authorized: bool
    time: float  # time.monotonic() on arrival

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (as served by `GET /_fake/requests`)."""
        data = asdict(self)
        data["files"] = {k: {"filename": n, "size": s} for k, (n, s) in self.files.items()}
        return data


# --------------------------------------------------------------------------- stand-in content


_ATTACHED_FILE = re.compile(r"📎 ([^\n]+?) \([^()\n]*\):$", re.MULTILINE)


def _role_content(message: Mapping[str, Any] | ChatMessage) -> tuple[str, str]:
    if isinstance(message, ChatMessage):
        return message.role, message.content
    return str(message.get("role", "")), str(message.get("content", ""))


def stand_in_reply(messages: Sequence[Mapping[str, Any] | ChatMessage]) -> str:
    """The fake's deterministic chat answer for `messages` (dicts or ChatMessage objects)."""
    pairs = [_role_content(m) for m in messages]
    users = [i for i, (role, _) in enumerate(pairs) if role == "user"]
    last = users[-1] if users else len(pairs)
    said = pairs[last][1] if users else ""
    earlier = sum(1 for role, _ in pairs[:last] if role in ("user", "assistant"))
    text = (
        f"(stand-in) You said: «{said[:200]}». "
        f"I can see {earlier} earlier message(s) in this conversation."
    )
    if earlier > 0 and users:
        text += f" The first was: «{pairs[users[0]][1][:80]}»."
    files = _ATTACHED_FILE.findall(said)  # tokbot quotes files as "📎 name (12 lines):"
    if files:
        text += f" Files I saw: {', '.join(files)}."
    system = next((c for role, c in pairs if role in ("system", "developer")), None)
    if system is not None:  # short: the bot sends its long default persona every time
        text += f" Persona: «{system if len(system) <= 40 else system[:39] + '…'}»."
    return text


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_NAME = re.compile(r"[A-Z][A-Za-z]{2,}")
_STAMP = re.compile(r"^\s*\[[^\]]*\]\s*")


def stand_in_summary(text: str, max_tokens: int | None = None) -> str:
    """The fake's deterministic summary: the sentences of `text` that carry facts, in order,
    without repeats, within `max_tokens` (about four characters each). A fact is a number after
    the line's "Speaker:", or a capitalised word after the sentence's first (a name). A real
    model keeps facts too; this lets tests check that a fact survives folding."""
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        words = _STAMP.sub("", sentence).split()  # (tokbot dates lines: "[Nov 30 09:15] …")
        number = any(c.isdigit() for w in words[1:] for c in w)
        name = any(_NAME.match(w) for w in words[2:])
        if (number or name) and sentence.strip() not in kept:
            kept.append(sentence.strip())
    summary = " ".join(kept) or "Nothing notable was said."
    if max_tokens is not None:
        summary = summary[: max_tokens * 4]
    return summary


def _responses_input_text(value: Any) -> str:
    """The text of /v1/responses `input`: a string, or an array of messages whose content is a
    string or `input_text` parts (OpenAI's Responses API, which TokModel implements)."""
    if isinstance(value, str) and value:
        return value
    if not isinstance(value, list) or not value:
        raise _bad("'input' must be a non-empty string or array.")
    texts: list[str] = []
    for i, item in enumerate(value):
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                part["text"]
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
        else:
            raise _bad(f"Invalid 'input[{i}]': expected a message with content.")
    return "\n".join(texts)


def stand_in_transcript(filename: str, data: bytes, translate: bool) -> str:
    """The fake's deterministic transcription (or English translation) of an audio upload."""
    kind = "English translation" if translate else "transcript"
    return f"(stand-in {kind} of {filename}, {len(data)} bytes)"


def stand_in_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector of `dimensions` floats: a hashed bag of words. Each
    lower-cased word adds ±1 to the dimension its hash picks (the sign from the hash too, so
    collisions cancel rather than pile up), then the vector is normalised. Texts that share
    words are near (cosine ~ the share of words in common); texts with none are near 0. A text
    without words is hashed whole, so it still gets a vector of its own."""
    words = _EMBEDDING_WORD.findall(text.lower()) or [text]
    values = [0.0] * dimensions
    for word in words:
        digest = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest())
        values[(digest >> 1) % dimensions] += 1.0 if digest & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


_EMBEDDING_WORD = re.compile(r"[^\W_]+")


def stand_in_relevance(query: str, document: str) -> float:
    """Share of the query's distinct words that occur in `document` (0..1, 4 decimals)."""
    q = set(re.findall(r"\w+", query.lower()))
    d = set(re.findall(r"\w+", document.lower()))
    if not q:
        return 0.0
    return round(len(q & d) / len(q), 4)


def _embedding_inputs(raw: Any) -> tuple[list[str], int]:
    """The inputs (as text to hash) and their token count. OpenAI's embeddings reference takes
    a string, an array of strings, an array of token ids, or an array of such arrays."""
    problem = (
        "'input' must be a non-empty string, array of strings, array of token ids, "
        "or array of token-id arrays."
    )

    def token_ids(value: Any) -> list[int] | None:
        if isinstance(value, list) and value and all(_is_token(t) for t in value):
            return value
        return None

    if isinstance(raw, str) and raw:
        return [raw], count_tokens(raw)
    if not isinstance(raw, list) or not raw:
        raise _bad(problem)
    if (single := token_ids(raw)) is not None:
        raw = [single]
    if all(isinstance(item, str) and item for item in raw):
        return list(raw), sum(count_tokens(item) for item in raw)
    arrays = [token_ids(item) for item in raw]
    if any(a is None for a in arrays):
        raise _bad(problem)
    return [f"tokens:{a}" for a in arrays], sum(len(a) for a in arrays if a is not None)


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def count_tokens(text: str) -> int:
    """The fake's token estimate: about four characters a token, at least one."""
    return max(1, (len(text) + 3) // 4)


def _pieces(text: str, chunk_chars: int | None = None) -> list[str]:
    """Split an answer into stream pieces of one or two words, or of `chunk_chars` characters
    (real models split mid-word, a secret included); concatenating back exactly."""
    if chunk_chars:
        return [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]
    words = re.findall(r"\S+\s*|\s+", text)
    return ["".join(words[i : i + 2]) for i in range(0, len(words), 2)]


def _model_object(model: str, created: int) -> dict[str, Any]:
    """One entry of GET /v1beta/models, as documented; owned_by is the provider prefix."""
    return {"id": model, "object": "model", "created": created, "owned_by": model.split("/")[0]}


#: Transcription response formats (OpenAI's audio reference; TokModel's page is cut off).
TRANSCRIPT_FORMATS: Final = ("json", "text", "srt", "verbose_json", "vtt")


def _transcript_response(text: str, fmt: str, size: int, translate: bool) -> web.Response:
    """One segment spanning the clip: `verbose_json` as openai-python's TranscriptionVerbose
    reads it; srt and vtt as subtitle files (SubRip uses a comma before the milliseconds,
    WebVTT a dot and a "WEBVTT" header)."""
    seconds = max(0.1, round(size / 32_000, 3))  # about 16 kHz 16-bit mono
    if fmt == "json":
        return web.json_response({"text": text})
    if fmt == "verbose_json":
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text, "tokens": [],
                   "temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.0,
                   "no_speech_prob": 0.0}  # fmt: skip
        return web.json_response(
            {
                "task": "translate" if translate else "transcribe",
                "language": "english",
                "duration": seconds,
                "text": text,
                "segments": [segment],
            }
        )
    if fmt == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if fmt == "srt":
        return web.Response(
            text=f"1\n00:00:00,000 --> {_clock(seconds, ',')}\n{text}\n\n",
            content_type="text/plain",
        )
    return web.Response(
        text=f"WEBVTT\n\n00:00:00.000 --> {_clock(seconds, '.')}\n{text}\n\n",
        content_type="text/plain",
    )


def _clock(seconds: float, mark: str) -> str:
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{mark}{rest % 1000:03d}"


# --------------------------------------------------------------------------- errors


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """TokModel's error body: `{"error": {"message", "type", "code": <status int>}}`."""
    etype = _ERROR_TYPES.get(status) or (
        "server_error" if status >= 500 else "invalid_request_error"
    )
    text = message or _DEFAULT_MESSAGES.get(status) or f"HTTP {status}"
    return {"error": {"message": text, "type": etype, "code": status}}


def _error_response(
    status: int, message: str | None = None, *, retry_after: float | None = None
) -> web.Response:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = (
            str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        )
    return web.json_response(error_body(status, message), status=status, headers=headers)


class _ApiError(Exception):
    """Raised inside a handler to answer with TokModel's error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bad(message: str) -> _ApiError:
    return _ApiError(400, message)


# --------------------------------------------------------------------------- request bodies


@dataclass(frozen=True)
class _Upload:
    filename: str
    content_type: str | None
    data: bytes


@dataclass
class _Body:
    json: Any = None
    json_error: bool = False
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, _Upload] = field(default_factory=dict)


@dataclass
class _Exchange:
    """Per-request state shared by the middleware and the handler (via a context variable)."""

    body: _Body
    cut_after: int | None = None
    cut_done: bool = False


_EXCHANGE: ContextVar[_Exchange] = ContextVar("tokbot_fake_exchange")


async def _read_body(request: web.Request) -> _Body:
    body = _Body()
    if request.content_type.startswith("multipart/"):
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                data = bytes(await part.read(decode=False))
                if part.filename is not None:
                    ctype = part.headers.get("Content-Type")
                    body.files[part.name] = _Upload(part.filename, ctype, data)
                else:
                    body.form[part.name] = data.decode("utf-8", errors="replace")
        except (ValueError, RuntimeError):
            body.json_error = True
        return body
    raw = await request.read()
    if raw:
        try:
            body.json = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body.json_error = True
    return body


def _json_object(request: web.Request) -> dict[str, Any]:
    body = _EXCHANGE.get().body
    if body.json_error or not isinstance(body.json, dict):
        raise _bad(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The API expects a JSON payload.)"
        )
    return body.json


def _multipart(request: web.Request) -> _Body:
    body = _EXCHANGE.get().body
    if body.json_error or not request.content_type.startswith("multipart/"):
        raise _bad("This endpoint expects a multipart/form-data body.")
    return body


def _str_field(data: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise _bad(f"Missing required parameter: '{name}'.")
        return None
    if not isinstance(value, str) or (required and not value):
        raise _bad(f"Invalid type or value for '{name}': expected a non-empty string.")
    return value


def _number(
    data: Mapping[str, Any], name: str, low: float, high: float, *, integer: bool = False
) -> float | None:
    raw = data.get(name)
    if raw is None:
        return None
    problem = f"Invalid value for '{name}': expected a number from {low:g} to {high:g}."
    value: float
    if isinstance(raw, str):  # multipart fields arrive as text
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            raise _bad(problem) from None
    elif isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _bad(problem)
    elif integer and not isinstance(raw, int):
        raise _bad(problem)
    else:
        value = raw
    if not low <= value <= high:
        raise _bad(problem)
    return float(value)


def _model(data: Mapping[str, Any], *, required: bool) -> str | None:
    model = data.get("model")
    if model is None or model == "":
        if required:
            raise _bad("You must provide a model parameter.")
        return None
    if not isinstance(model, str):
        raise _bad("Invalid type for 'model': expected a string.")
    if model not in MODEL_IDS:
        raise _ApiError(404, f"The model '{model}' does not exist.")
    return model


#: Roles the stand-in reads. "developer" is OpenAI's newer name for "system" (sent by the
#: SDK for o1-style models); TokModel's docs name only system/user/assistant.
_ROLES: Final = ("system", "developer", "user", "assistant")


def _messages(value: Any) -> tuple[list[dict[str, str]], list[_SeenImage]]:
    """The messages as plain text (a picture as "[picture: what it shows]"), and the pictures."""
    if not isinstance(value, list) or not value:
        raise _bad("'messages' must be a non-empty array.")
    out: list[dict[str, str]] = []
    seen: list[_SeenImage] = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
            raise _bad(f"Invalid 'messages[{i}].role': expected one of {', '.join(_ROLES)}.")
        out.append({"role": msg["role"], "content": _content_text(msg.get("content"), i, seen)})
    return out, seen


@dataclass(frozen=True)
class _SeenImage:
    where: str  # OpenAI's `param` spelling of the part's type: "messages.[0].content.[1].type"
    description: str
    tokens: int


def _content_text(content: Any, i: int, seen: list[_SeenImage]) -> str:
    """A message's text: a string, or OpenAI's array of content parts (`text` and `image_url`
    parts, per the Chat Completions reference), whose texts are joined; a picture inline as a
    base64 `data:` URL is looked at (`fake_vision`), one behind a web URL is not fetched."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise _bad(f"Invalid 'messages[{i}].content': expected a string or an array of parts.")
    texts = []
    for j, part in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            url = part["image_url"].get("url")
            if not isinstance(url, str):
                raise _bad(f"Invalid '{where}.image_url.url': expected a string.")
            description, tokens = _look_at(url)
            seen.append(_SeenImage(f"messages.[{i}].content.[{j}].type", description, tokens))
            texts.append(f"[picture: {description}]")
        else:
            raise _bad(f"Invalid '{where}': expected a 'text' or 'image_url' part.")
    return " ".join(texts)


def _look_at(url: str) -> tuple[str, int]:
    """What a picture shows and what it costs in tokens; 400 for bytes that are no picture
    (OpenAI's wording for an image it cannot read)."""
    decoded = fake_vision.decode_data_url(url)
    if decoded is None:
        if url.startswith(("http://", "https://")):
            return "a picture at a web address (the stand-in does not fetch it)", IMAGE_TOKENS
        raise _bad("Invalid image URL: expected a base64 data URL or an http(s) URL.")
    data = decoded[1]
    if image_type(data) is None:
        raise _bad(
            "You uploaded an unsupported image. Please make sure your image is below 20 MB in "
            "size and is of one the following formats: ['png', 'jpeg', 'gif', 'webp']."
        )
    return fake_vision.describe_image(data), fake_vision.image_tokens(data)


# --------------------------------------------------------------------------- the server


@dataclass
class _Queued:
    fault: Fault
    remaining: int


class FakeTokModel:
    """A local TokModel stand-in; see the module docstring."""

    MAX_RECORDED: Final = 10_000  # oldest records are dropped beyond this

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        chunk_chars: int | None = None,
        missing_routes: Sequence[str] = (),
        image_urls_only: bool = False,
        text_only_models: Sequence[str] = (),
        model_modalities: bool = False,
    ) -> None:
        self.api_key = api_key
        #: Paths (and everything under them) this gateway does not serve, e.g.
        #: ("/v1beta/models",) to play a LiteLLM proxy, which has only /v1/models.
        self.missing_routes = set(missing_routes)
        #: Answer images as temporary URLs even when `b64_json` is asked for, as some
        #: gateways do (LiteLLM passes provider answers through).
        self.image_urls_only = image_urls_only
        #: Models that refuse pictures (400, as OpenAI answers for a text-only model).
        self.text_only_models = set(text_only_models)
        #: Say in the model list which models take pictures, as OpenRouter does
        #: (`architecture.input_modalities`); TokModel's documented model object does not.
        self.model_modalities = model_modalities
        self.latency = latency
        self.chunk_delay = chunk_delay
        #: Stream answers this many characters a chunk (None: a word or two, the default).
        self.chunk_chars = chunk_chars
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Queued] = []
        self._reply: str | None = None
        self._files: OrderedDict[str, bytes] = OrderedDict()
        self._counter = 0
        self._url: str | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._app = self._build_app()

    # ---- public controls

    @property
    def app(self) -> web.Application:
        """The aiohttp application (serve it with `web.run_app` or `start()`)."""
        return self._app

    @property
    def url(self) -> str:
        """Base URL while started, e.g. `http://127.0.0.1:PORT`."""
        if self._url is None:
            raise RuntimeError("FakeTokModel is not started")
        return self._url

    def fail(self, fault: Fault) -> None:
        """Queue a fault; the first queued fault matching a request's path applies to it."""
        self._faults.append(_Queued(fault, fault.times))

    def clear(self) -> None:
        """Drop every queued fault."""
        self._faults.clear()

    def set_reply(self, text: str | None) -> None:
        """Fix the chat answer text (None restores `stand_in_reply`)."""
        self._reply = text

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 picks a free port) and return the base URL."""
        if self._runner is not None:
            return self.url
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        # A real API takes a burst of connections; the default backlog (128) would drop SYNs
        # and make the 129th client wait a second for its retransmit.
        site = web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG)
        await site.start()
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown}:{bound_port}"
        return self._url

    async def stop(self) -> None:
        """Stop serving; wakes any injected delays so shutdown is quick."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._url = None

    async def __aenter__(self) -> FakeTokModel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- plumbing

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[_fake_middleware], client_max_size=32 * 1024 * 1024)
        app[_FAKE_KEY] = self
        r = app.router
        r.add_get("/v1beta/models", self._models)
        r.add_get("/v1beta/models/{model:.+}", self._model)
        # Not in TokModel's docs, but OpenAI's (GET /v1/models, /v1/models/{model}), and what
        # OpenAI SDKs call: `models.list()` is `{base_url}/models`.
        r.add_get("/v1/models", self._models)
        r.add_get("/v1/models/{model:.+}", self._model)
        r.add_post("/v1/chat/completions", self._chat)
        r.add_post("/v1/responses/compact", self._responses_compact)
        r.add_post("/v1/images/generations", self._image_generations)
        r.add_post("/v1/images/edits", self._image_edits)
        r.add_post("/v1/images/variations", self._image_variations)
        r.add_post("/v1/audio/speech", self._speech)
        r.add_post("/v1/audio/transcriptions", self._transcriptions)
        r.add_post("/v1/audio/translations", self._translations)
        r.add_post("/v1/embeddings", self._embeddings)
        r.add_post("/v1/rerank", self._rerank)
        r.add_get("/_fake/files/{name}", self._file)
        r.add_post("/_fake/faults", self._control_add_fault)
        r.add_delete("/_fake/faults", self._control_clear_faults)
        r.add_post("/_fake/reply", self._control_reply)
        r.add_get("/_fake/requests", self._control_requests)
        r.add_delete("/_fake/requests", self._control_clear_requests)
        return app

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:08d}"

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        try:  # a stop() wakes every sleeper, so tests never wait for a long injected delay
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    def _missing(self, path: str) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in self.missing_routes)

    def _take_fault(self, path: str) -> Fault | None:
        for queued in self._faults:
            wanted = queued.fault.path
            if (
                wanted is None
                or wanted == path
                or (wanted.endswith("*") and path.startswith(wanted[:-1]))
            ):
                if queued.remaining > 0:
                    queued.remaining -= 1
                    if queued.remaining == 0:
                        self._faults.remove(queued)
                return queued.fault
        return None

    async def _dispatch(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = request.path
        is_api = path.startswith(("/v1/", "/v1beta/")) or path in ("/v1", "/v1beta")
        try:
            if not is_api and not path.startswith("/_fake/files/"):
                return await handler(request)  # control endpoints: no auth, not recorded
            if self._missing(path):
                # FastAPI (LiteLLM's framework) answers an unknown route before any key check,
                # with its default body: starlette.exceptions.HTTPException -> {"detail": ...}.
                return web.json_response({"detail": "Not Found"}, status=404)
            body = await _read_body(request)
            exchange = _Exchange(body)
            _EXCHANGE.set(exchange)  # the handler runs in this same task and context
            authorized = self._authorized(request)
            self.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=path,
                    json=body.json if isinstance(body.json, dict) else None,
                    form=dict(body.form),
                    files={k: (u.filename, len(u.data)) for k, u in body.files.items()},
                    authorized=authorized,
                    time=time.monotonic(),
                )
            )
            if len(self.requests) > self.MAX_RECORDED:  # a long-running fake must not grow forever
                del self.requests[: len(self.requests) - self.MAX_RECORDED]
            if is_api and not authorized:
                return _error_response(401)
            fault = self._take_fault(path)
            await self._sleep(self.latency)
            if fault is None:
                return await handler(request)
            return await self._apply_fault(fault, request, handler)
        except _ApiError as exc:
            return _error_response(exc.status, exc.message)
        except ConnectionResetError:
            # The client left (e.g. it timed out during an injected delay); nobody to answer.
            logger.debug("client went away: %s %s", request.method, path)
            return web.Response(status=204)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = f"Unknown request URL: {request.method} {path}."
            if exc.status == 405:
                message = f"Method {request.method} is not allowed for {path}."
            elif exc.status == 413:
                message = "The request body is too large."
            return _error_response(exc.status, message)

    async def _apply_fault(
        self,
        fault: Fault,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        await self._sleep(fault.delay)
        if fault.status is not None:
            return _error_response(fault.status, fault.message, retry_after=fault.retry_after)
        if fault.malformed:
            body = _EXCHANGE.get().body.json
            if isinstance(body, dict) and body.get("stream") is True:
                # To a stream request, an event that is not JSON: the same page sent bare would
                # read as an empty stream to SSE clients (openai-python's SSEDecoder finds no
                # event in it and ends quietly), hiding the fault.
                return web.Response(
                    status=200,
                    body=b"data: <html><body>upstream hiccup</body></html>\n\n",
                    content_type="text/event-stream",
                )
            # A realistic failure: a proxy's HTML page served as a 200 "JSON" answer.
            return web.Response(
                status=200,
                body=b"<html><body>upstream hiccup</body></html>",
                content_type="application/json",
            )
        if fault.cut_after is None:
            return await handler(request)
        exchange = _EXCHANGE.get()
        exchange.cut_after = fault.cut_after
        response = await handler(request)
        if exchange.cut_done or not isinstance(response, web.Response):
            return response
        return await self._truncate(request, response, fault.cut_after)

    async def _truncate(
        self, request: web.Request, response: web.Response, cut_after: int
    ) -> web.StreamResponse:
        body = response.body if isinstance(response.body, bytes) else b""
        cut = min(cut_after, max(0, len(body) - 1))
        out = web.StreamResponse(status=response.status)
        out.content_type = response.content_type
        out.content_length = len(body)  # promise the whole body, then send only part of it
        await out.prepare(request)
        await out.write(body[:cut])
        self._drop(request)
        return out

    @staticmethod
    def _drop(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.close()

    # ---- endpoints

    async def _models(self, request: web.Request) -> web.StreamResponse:
        data = [self._described(_model_object(model, created)) for model, created in MODELS]
        return web.json_response({"object": "list", "data": data})

    def _described(self, item: dict[str, Any]) -> dict[str, Any]:
        """With `model_modalities`, a chat model says what it takes, OpenRouter's way."""
        model = item["id"]
        if not self.model_modalities or model_kind(model) != "chat":
            return item
        sees = model in VISION_MODELS and model not in self.text_only_models
        inputs = ["text", "image"] if sees else ["text"]
        return item | {"architecture": {"input_modalities": inputs, "output_modalities": ["text"]}}

    async def _model(self, request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["model"]
        created = dict(MODELS).get(wanted)
        if created is None:  # OpenAI: 404 with code "model_not_found" for a model you can't use
            raise _ApiError(404, f"The model '{wanted}' does not exist.")
        return web.json_response(self._described(_model_object(wanted, created)))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = _json_object(request)
        model = _model(body, required=True)
        assert model is not None
        messages, images = _messages(body.get("messages"))
        if images and model in self.text_only_models:
            body = error_body(400, NO_IMAGES_MESSAGE)
            body["error"]["param"] = images[0].where
            return web.json_response(body, status=400)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise _bad("Invalid type for 'stream': expected a boolean.")
        options = body.get("stream_options")
        if options is not None and (not stream or not isinstance(options, dict)):
            raise _bad("'stream_options' is only allowed when 'stream' is true.")
        _number(body, "temperature", 0, 2)
        _number(body, "top_p", 0, 1)
        max_tokens = _number(body, "max_tokens", 1, 1_000_000, integer=True)
        # OpenAI's newer name for the same limit (max_tokens is deprecated there).
        newer = _number(body, "max_completion_tokens", 1, 1_000_000, integer=True)
        max_tokens = newer if newer is not None else max_tokens
        n = int(_number(body, "n", 1, 10, integer=True) or 1)

        text = self._reply if self._reply is not None else stand_in_reply(messages)
        if images and self._reply is None:
            text += f" I see {len(images)} picture(s): " + "; ".join(i.description for i in images)
            text += "."
        finish = "stop"
        if max_tokens is not None and count_tokens(text) > max_tokens:
            text, finish = text[: int(max_tokens) * 4], "length"  # stops at the limit mid-answer
        prompt_tokens = count_tokens("".join(m["content"] for m in messages))
        prompt_tokens += sum(image.tokens for image in images)
        completion_tokens = count_tokens(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        chat_id = self._next_id("chatcmpl-fake")
        created = int(time.time())
        if stream:
            include_usage = bool(options and options.get("include_usage"))
            return await self._chat_stream(
                request, chat_id, created, model, text, finish, usage if include_usage else None
            )
        choice = {"message": {"role": "assistant", "content": text}, "finish_reason": finish}
        return web.json_response(
            {
                "id": chat_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": i, **choice} for i in range(n)],
                "usage": usage,
            }
        )

    async def _responses_compact(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/responses/compact: the /v1/responses body, answered with "only the generated
        text as a plain string" (TokModel's responses reference; the content type is not
        documented: text/plain here). The text is `stand_in_summary` of the input."""
        body = _json_object(request)
        _model(body, required=True)
        text = _responses_input_text(body.get("input"))
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise _bad("Invalid type for 'instructions': expected a string.")
        _number(body, "temperature", 0, 2)
        limit = _number(body, "max_output_tokens", 1, 1_000_000, integer=True)
        if body.get("stream") is True:  # not documented for compact
            raise _bad("'stream' is not supported by /v1/responses/compact.")
        return web.Response(text=stand_in_summary(text, int(limit) if limit else None))

    async def _chat_stream(
        self,
        request: web.Request,
        chat_id: str,
        created: int,
        model: str,
        text: str,
        finish: str,
        usage: dict[str, int] | None,
    ) -> web.StreamResponse:
        def chunk(delta: dict[str, str], finish_reason: str | None) -> dict[str, Any]:
            event: dict[str, Any] = {
                "id": chat_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            if usage is not None:
                event["usage"] = None  # as OpenAI does when include_usage is on
            return event

        events: list[dict[str, Any] | str] = [chunk({"role": "assistant", "content": ""}, None)]
        events += [chunk({"content": piece}, None) for piece in _pieces(text, self.chunk_chars)]
        events.append(chunk({}, finish))
        if usage is not None:
            events.append(
                {
                    "id": chat_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        events.append("[DONE]")

        exchange = _EXCHANGE.get()
        cut_after, exchange.cut_done = exchange.cut_after, True
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        try:
            await response.prepare(request)
            for i, event in enumerate(events):
                if cut_after is not None and i >= cut_after:
                    self._drop(request)  # no [DONE]: the client must notice the broken stream
                    return response
                if i:
                    await self._sleep(self.chunk_delay)
                data = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False)
                await response.write(f"data: {data}\n\n".encode())
            await response.write_eof()
        except ConnectionResetError:
            logger.debug("client went away mid-stream")  # e.g. it timed out; nothing to do
        return response

    def _image_data(
        self, request: web.Request, pngs: list[bytes], response_format: str, prompt: str | None
    ) -> web.Response:
        items: list[dict[str, Any]] = []
        for png in pngs:
            if response_format == "b64_json":
                item: dict[str, Any] = {"b64_json": base64.b64encode(png).decode("ascii")}
            else:
                name = hashlib.sha256(png).hexdigest()[:24]
                self._files[name] = png
                while len(self._files) > 64:  # temporary URLs, as documented: keep a few
                    self._files.popitem(last=False)
                item = {"url": f"{request.url.origin()}/_fake/files/{name}.png"}
            if prompt is not None:
                item["revised_prompt"] = f"A stand-in picture of: {prompt}"
            items.append(item)
        return web.json_response({"created": int(time.time()), "data": items})

    def _image_options(self, data: Mapping[str, Any]) -> tuple[int, int, int, str]:
        _model(data, required=False)
        n = int(_number(data, "n", 1, 10, integer=True) or 1)
        size = data.get("size") or "1024x1024"
        if size not in IMAGE_SIZES:
            raise _bad(f"Invalid size {size!r}. Supported: {', '.join(sorted(IMAGE_SIZES))}.")
        fmt = data.get("response_format") or "url"
        if fmt not in ("url", "b64_json"):
            raise _bad("Invalid 'response_format': expected 'url' or 'b64_json'.")
        if self.image_urls_only:
            fmt = "url"
        width, height = (int(v) for v in str(size).split("x"))
        return n, width, height, str(fmt)

    async def _image_generations(self, request: web.Request) -> web.StreamResponse:
        body = _json_object(request)
        prompt = _str_field(body, "prompt", required=True)
        assert prompt is not None
        n, width, height, fmt = self._image_options(body)
        pngs = [fake_media.png_image(width, height, f"{prompt}\x00{i}") for i in range(n)]
        return self._image_data(request, pngs, fmt, prompt)

    @staticmethod
    def _png_upload(body: _Body, name: str, *, required: bool) -> _Upload | None:
        # openai-python sends a list of images as repeated `image[]` parts (extract_files with
        # array_format "brackets"); LiteLLM takes both. The last one stands for them all here.
        upload = body.files.get(name) or body.files.get(f"{name}[]")
        if upload is None:
            if required or name in body.form:
                raise _bad(f"'{name}' must be uploaded as a PNG file.")
            return None
        if not fake_media.is_png(upload.data):
            raise _bad(f"Invalid '{name}': the file must be a valid PNG image.")
        return upload

    async def _image_edits(self, request: web.Request) -> web.StreamResponse:
        body = _multipart(request)
        image = self._png_upload(body, "image", required=True)
        mask = self._png_upload(body, "mask", required=False)
        prompt = _str_field(body.form, "prompt", required=True)
        assert image is not None and prompt is not None
        n, width, height, fmt = self._image_options(body.form)
        seed = hashlib.sha256(image.data + (mask.data if mask else b"")).hexdigest()
        pngs = [
            fake_media.png_image(width, height, f"edit\x00{seed}\x00{prompt}\x00{i}")
            for i in range(n)
        ]
        return self._image_data(request, pngs, fmt, prompt)

    async def _image_variations(self, request: web.Request) -> web.StreamResponse:
        body = _multipart(request)
        image = self._png_upload(body, "image", required=True)
        assert image is not None
        n, width, height, fmt = self._image_options(body.form)
        seed = hashlib.sha256(image.data).hexdigest()
        pngs = [fake_media.png_image(width, height, f"vary\x00{seed}\x00{i}") for i in range(n)]
        return self._image_data(request, pngs, fmt, None)

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = _json_object(request)
        _model(body, required=True)
        text = _str_field(body, "input", required=True)
        _str_field(body, "voice", required=True)
        assert text is not None
        if len(text) > TTS_MAX_INPUT:
            raise _bad(f"'input' is too long: at most {TTS_MAX_INPUT} characters.")
        fmt = body.get("response_format") or "mp3"
        if fmt not in fake_media.AUDIO_CONTENT_TYPES:
            formats = ", ".join(fake_media.AUDIO_CONTENT_TYPES)
            raise _bad(f"Invalid 'response_format' {fmt!r}. Supported: {formats}.")
        speed = _number(body, "speed", 0.25, 4.0) or 1.0
        seconds = min(30.0, max(0.5, 0.05 * len(text) / speed))
        audio = fake_media.speech_audio(str(fmt), seconds)
        return web.Response(body=audio, content_type=fake_media.AUDIO_CONTENT_TYPES[str(fmt)])

    async def _audio_to_text(self, request: web.Request, translate: bool) -> web.StreamResponse:
        body = _multipart(request)
        upload = body.files.get("file")
        if upload is None:
            raise _bad("Missing required parameter: 'file' (an audio file upload).")
        _model(body.form, required=True)
        fmt = body.form.get("response_format") or "json"
        if fmt not in TRANSCRIPT_FORMATS:
            raise _bad(
                f"Invalid 'response_format': expected one of {', '.join(TRANSCRIPT_FORMATS)}."
            )
        if not fake_media.looks_like_audio(upload.data):
            raise _bad(AUDIO_FORMAT_ERROR)
        text = stand_in_transcript(upload.filename, upload.data, translate)
        return _transcript_response(text, fmt, len(upload.data), translate)

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        return await self._audio_to_text(request, translate=False)

    async def _translations(self, request: web.Request) -> web.StreamResponse:
        return await self._audio_to_text(request, translate=True)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = _json_object(request)
        model = _model(body, required=True)
        inputs, tokens = _embedding_inputs(body.get("input"))
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _bad("Invalid 'encoding_format': expected 'float' or 'base64'.")
        # OpenAI's text-embedding-3 models can be shortened to `dimensions` (then renormalised).
        dimensions = _number(body, "dimensions", 1, EMBEDDING_DIMENSIONS, integer=True)
        data = []
        for i, text in enumerate(inputs):
            # (OpenAI shortens its vectors to `dimensions`; the stand-in hashes into that many.)
            vector = stand_in_embedding(text, int(dimensions or EMBEDDING_DIMENSIONS))
            embedding: list[float] | str = vector
            if encoding == "base64":
                packed = struct.pack(f"<{len(vector)}f", *vector)
                embedding = base64.b64encode(packed).decode("ascii")
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _rerank(self, request: web.Request) -> web.StreamResponse:
        body = _json_object(request)
        model = _model(body, required=True)
        query = _str_field(body, "query", required=True)
        assert query is not None
        documents = body.get("documents")
        if (
            not isinstance(documents, list)
            or not documents
            or not all(isinstance(d, str) for d in documents)
        ):
            raise _bad("'documents' must be a non-empty array of strings.")
        top_n = _number(body, "top_n", 1, 10_000, integer=True)
        scored = sorted(
            ((stand_in_relevance(query, doc), i) for i, doc in enumerate(documents)),
            key=lambda pair: (-pair[0], pair[1]),
        )
        if top_n is not None:
            scored = scored[: int(top_n)]
        results = [
            {"index": i, "relevance_score": score, "document": {"text": documents[i]}}
            for score, i in scored
        ]
        return web.json_response(
            {"id": self._next_id("rerank-fake"), "model": model, "results": results}
        )

    async def _file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"].removesuffix(".png")
        png = self._files.get(name)
        if png is None:
            raise _ApiError(404, "This image URL has expired or never existed.")
        return web.Response(body=png, content_type="image/png")

    # ---- HTTP control endpoints (no auth: they exist only on the fake)

    async def _control_add_fault(self, request: web.Request) -> web.StreamResponse:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object describing a Fault")
            fault = Fault.from_mapping(data)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            return _error_response(400, f"Bad fault: {exc}")
        self.fail(fault)
        return web.json_response({"queued": len(self._faults)})

    async def _control_clear_faults(self, request: web.Request) -> web.StreamResponse:
        self.clear()
        return web.json_response({"queued": 0})

    async def _control_reply(self, request: web.Request) -> web.StreamResponse:
        try:
            data = await request.json()
        except ValueError:
            data = None
        chunk = data.get("chunk_chars") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("text"), str | None)
            or not (chunk is None or (isinstance(chunk, int) and chunk > 0))
        ):
            return _error_response(
                400, 'Expected {"text": <string or null>, "chunk_chars": <int > 0, optional>}.'
            )
        self.set_reply(data.get("text"))
        if "chunk_chars" in data:
            self.chunk_chars = chunk
        return web.json_response({"text": self._reply, "chunk_chars": self.chunk_chars})

    async def _control_requests(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([r.to_json() for r in self.requests])

    async def _control_clear_requests(self, request: web.Request) -> web.StreamResponse:
        self.requests.clear()
        return web.json_response({"requests": 0})


_FAKE_KEY: Final = web.AppKey("tokbot_fake", FakeTokModel)


@web.middleware
async def _fake_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    return await request.app[_FAKE_KEY]._dispatch(request, handler)

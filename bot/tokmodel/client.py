"""The TokModel client: one typed method per endpoint over one aiohttp session.

Every HTTP request goes through `TokModelClient._request`, the single place that applies timeouts,
retries with backoff, turns non-2xx answers into exceptions (via `error_for_status`) and maps
transport failures onto the error tree in `errors.py`. Callers only ever see `TokModelError`s.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import mimetypes
import random
import struct
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, TypeGuard, overload
from urllib.parse import urljoin, urlsplit

import aiohttp

from bot.tokmodel.errors import (
    BadRequest,
    ConnectionFailed,
    ImageRejected,
    MalformedResponse,
    NotFound,
    RateLimited,
    ServerError,
    StreamBroken,
    Timeout,
    TokModelError,
    error_for_status,
    error_message_from_body,
    parse_retry_after,
)
from bot.tokmodel.images import MAX_IMAGE_BYTES, image_type
from bot.tokmodel.kinds import model_kind, takes_images
from bot.tokmodel.sse import SSEDecoder
from bot.tokmodel.types import (
    ChatDelta,
    ChatMessage,
    ChatResult,
    Embedded,
    GeneratedImage,
    ModelInfo,
    RerankResult,
    Usage,
)

logger = logging.getLogger("tokbot.tokmodel")

_USER_AGENT: Final = "tokbot/0.1 (+aiohttp)"
_MAX_BACKOFF: Final = 8.0  # cap of one backoff sleep, before jitter
_RETRY_AFTER_STATUSES: Final = (429, 503)
_MODELS_PATHS: Final = ("/v1beta/models", "/v1/models")  # TokModel's documented one first

FormFactory = Callable[[], aiohttp.FormData]


@dataclass(frozen=True)
class _Reply:
    """A complete 2xx answer."""

    status: int
    content_type: str
    body: bytes
    label: str  # "POST /v1/..." for error messages


class TokModelClient:
    """Async client for the TokModel gateway (OpenAI-compatible).

    Use as `async with TokModelClient(base_url, api_key) as client: ...`, or call `start()` and
    `close()`. A session passed in is used as is and left open by `close()`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_budget: float = 20.0,
        backoff_base: float = 0.5,
        session: aiohttp.ClientSession | None = None,
        observer: Callable[[str, str, float], None] | None = None,
        max_image_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        """`observer(endpoint, outcome, seconds)` is called after every attempt (for metrics);
        `outcome` is the HTTP status or the failure's kind. Images TokModel sends larger than
        `max_image_bytes` are refused."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_retries < 0 or retry_budget < 0 or backoff_base < 0:
            raise ValueError("max_retries, retry_budget and backoff_base must not be negative")
        self._base_url = normalise_base_url(base_url)
        self._api_key = api_key
        self._timeout = timeout
        self._max_retries = max_retries
        self._retry_budget = retry_budget
        self._backoff_base = backoff_base
        self._session = session
        self._owns_session = session is None
        self._observer = observer
        self._random = random.Random()
        self._models_path: str | None = None
        self._max_image_bytes = max_image_bytes
        self._stream_usage = True  # ask for usage in streams until a gateway refuses
        self._plain_timeout = aiohttp.ClientTimeout(total=timeout)
        # A stream may legitimately run for minutes; what must not happen is silence.
        self._stream_timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)

    def __repr__(self) -> str:  # never the key
        return f"TokModelClient(base_url={self._base_url!r})"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Create the HTTP session now rather than on the first request."""
        self._ensure_session()

    async def close(self) -> None:
        """Close the session, unless it was passed in by the caller."""
        if not self._owns_session:
            return
        # Forgotten first: a request made while it closes opens a session of its own (which
        # this would otherwise forget unclosed).
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> TokModelClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            # No cap on connections: every answer in flight holds one for its whole stream, so
            # aiohttp's default of 100 would make the 101st answer wait for the first to end.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            self._owns_session = True
        return self._session

    # ------------------------------------------------------------------ endpoints

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ChatResult:
        """Ask for one complete chat answer (POST /v1/chat/completions)."""
        payload = _chat_payload(messages, model, max_tokens, temperature)
        reply = await self._request("POST", "/v1/chat/completions", json_body=payload)
        return _chat_result(reply, model)

    async def chat_stream(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[ChatDelta]:
        """Stream a chat answer as deltas (SSE until `data: [DONE]`).

        Raises `StreamBroken` if the stream ends before `[DONE]` and `Timeout` if no data arrives
        for `timeout` seconds; both carry the text received so far in `partial`. A 2xx body that
        is not an event stream at all raises `MalformedResponse`.
        """
        payload = _chat_payload(messages, model, max_tokens, temperature)
        payload["stream"] = True
        if self._stream_usage:
            # OpenAI's way to get usage in a stream (a last chunk with empty `choices`);
            # TokModel's docs are silent on it.
            payload["stream_options"] = {"include_usage": True}
        try:
            response = await self._request(
                "POST", "/v1/chat/completions", json_body=payload, stream=True
            )
        except BadRequest as exc:
            if "stream_options" not in payload or not _names_stream_options(exc):
                raise
            self._stream_usage = False  # this gateway refuses it; the caller estimates usage
            logger.info("TokModel refused stream_options; streamed usage will be estimated")
            del payload["stream_options"]
            response = await self._request(
                "POST", "/v1/chat/completions", json_body=payload, stream=True
            )
        decoder = SSEDecoder()
        parts: list[str] = []
        events = 0
        done = False
        try:
            if "json" in response.content_type:
                # A gateway may ignore `stream` and answer the whole completion at once.
                body = b""
                while chunk := await self._read_stream(response, parts):
                    body += chunk
                done = True
                reply = _Reply(
                    response.status, response.content_type, body, "POST /v1/chat/completions"
                )
                result = _chat_result(reply, model)
                yield ChatDelta(result.text, result.usage, result.finish_reason)
                return
            while not done:
                chunk = await self._read_stream(response, parts)
                for data in decoder.feed(chunk) if chunk else decoder.close():
                    events += 1
                    if data.strip() == "[DONE]":
                        done = True
                        break
                    delta = self._parse_chunk(data, parts)
                    if delta is None:
                        continue
                    if delta.text:
                        parts.append(delta.text)
                    yield delta
                if not chunk and not done:
                    if events == 0:
                        raise MalformedResponse(
                            "TokModel answered a stream request with no events "
                            f"({response.content_type or 'no content type'})."
                        )
                    raise StreamBroken(
                        "TokModel's answer stream ended before it was complete.",
                        partial="".join(parts),
                    )
        finally:
            # After [DONE] the connection can go back to the pool; otherwise drop it.
            if done:
                response.release()
            else:
                response.close()

    @property
    def models_path(self) -> str | None:
        """Where the model list was found (None until `list_models` succeeded)."""
        return self._models_path

    async def list_models(self) -> list[ModelInfo]:
        """The models TokModel offers (GET /v1beta/models, as documented).

        OpenAI-compatible gateways such as LiteLLM serve only OpenAI's GET /v1/models: on a 404
        that one is tried, and the path that answered is remembered for this client."""
        paths = [self._models_path] if self._models_path else list(_MODELS_PATHS)
        for path in paths:
            try:
                reply = await self._request("GET", path)
            except NotFound:
                if path == paths[-1]:
                    raise
                continue
            self._models_path = path
            break
        data = _json_any(reply)
        # The docs say both "a JSON array" and {"object": "list", "data": [...]}.
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise MalformedResponse(f"{reply.label}: expected a list of models")
        models = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            owned_by, created = item.get("owned_by"), item.get("created")
            declared = item.get("type", item.get("mode"))
            models.append(
                ModelInfo(
                    id=item["id"],
                    owned_by=owned_by if isinstance(owned_by, str) else None,
                    created=created if _is_int(created) else None,
                    kind=model_kind(item["id"], declared if isinstance(declared, str) else None),
                    takes_images=takes_images(item),
                )
            )
        return models

    async def generate_image(
        self, prompt: str, *, model: str | None = None, size: str | None = None, n: int = 1
    ) -> list[GeneratedImage]:
        """Generate `n` images from a prompt (POST /v1/images/generations); PNG bytes back."""
        payload: dict[str, Any] = {"prompt": prompt, "n": n, "response_format": "b64_json"}
        if model is not None:
            payload["model"] = model
        if size is not None:
            payload["size"] = size
        reply = await self._request("POST", "/v1/images/generations", json_body=payload)
        return await self._images(reply)

    async def edit_image(
        self,
        image: bytes,
        prompt: str,
        *,
        mask: bytes | None = None,
        model: str | None = None,
        size: str | None = None,
        n: int = 1,
    ) -> list[GeneratedImage]:
        """Edit a PNG with a prompt and optional PNG mask (POST /v1/images/edits, multipart)."""
        files = {"image": (image, "image.png", "image/png")}
        if mask is not None:
            files["mask"] = (mask, "mask.png", "image/png")
        fields = {"prompt": prompt, "model": model, "size": size}
        form = _form_factory(files, {**fields, "n": str(n), "response_format": "b64_json"})
        reply = await self._request("POST", "/v1/images/edits", form=form)
        return await self._images(reply)

    async def vary_image(
        self, image: bytes, *, model: str | None = None, size: str | None = None, n: int = 1
    ) -> list[GeneratedImage]:
        """Variations of a PNG (POST /v1/images/variations, multipart)."""
        files = {"image": (image, "image.png", "image/png")}
        fields = {"model": model, "size": size, "n": str(n), "response_format": "b64_json"}
        reply = await self._request(
            "POST", "/v1/images/variations", form=_form_factory(files, fields)
        )
        return await self._images(reply)

    async def speech(
        self,
        text: str,
        *,
        model: str,
        voice: str,
        response_format: str = "mp3",
        speed: float | None = None,
    ) -> bytes:
        """Text to speech (POST /v1/audio/speech); the raw audio bytes in `response_format`."""
        payload: dict[str, Any] = {
            "model": model,
            "input": text,
            "voice": voice,
            "response_format": response_format,
        }
        if speed is not None:
            payload["speed"] = speed
        reply = await self._request("POST", "/v1/audio/speech", json_body=payload)
        if not reply.body:
            raise MalformedResponse(f"{reply.label}: empty audio")
        return reply.body

    async def transcribe(
        self,
        audio: bytes,
        filename: str,
        *,
        model: str,
        translate: bool = False,
        language: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Speech to text (POST /v1/audio/transcriptions, or /translations into English)."""
        path = "/v1/audio/translations" if translate else "/v1/audio/transcriptions"
        ctype = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        # `language` names the spoken language; translations always produce English.
        fields = {"model": model, "language": None if translate else language}
        form = _form_factory({"file": (audio, filename, ctype)}, fields)
        reply = await self._request("POST", path, form=form)
        if "json" in reply.content_type or (
            not reply.content_type.startswith("text/") and reply.body.lstrip().startswith(b"{")
        ):
            data = _json_object(reply)
            text = data.get("text")
            if not isinstance(text, str):
                raise MalformedResponse(f"{reply.label}: no 'text' in the answer")
            return text
        return reply.body.decode("utf-8", errors="replace").strip()

    async def compact(
        self,
        text: str,
        *,
        model: str,
        instructions: str | None = None,
        max_output_tokens: int | None = None,
    ) -> str:
        """One answer as plain text (POST /v1/responses/compact: the body of /v1/responses,
        the answer "only the generated text as a plain string", per TokModel's responses
        reference). The content type is not documented, so a JSON string, or a Responses
        envelope from a gateway that sends one anyway, is read too."""
        payload: dict[str, Any] = {"model": model, "input": text}
        if instructions is not None:
            payload["instructions"] = instructions
        if max_output_tokens is not None:
            payload["max_output_tokens"] = max_output_tokens
        reply = await self._request("POST", "/v1/responses/compact", json_body=payload)
        body = reply.body.decode("utf-8", errors="replace").strip()
        if "json" in reply.content_type or body.startswith(("{", '"')):
            with contextlib.suppress(ValueError):
                return _compact_text(json.loads(body), reply)
        return body

    async def embeddings(self, inputs: Sequence[str], *, model: str) -> list[list[float]]:
        """One vector per input, in input order (POST /v1/embeddings)."""
        return (await self.embed(inputs, model=model)).vectors

    async def embed(
        self, inputs: Sequence[str], *, model: str, dimensions: int | None = None
    ) -> Embedded:
        """One vector per input, in input order, with the usage reported (POST
        /v1/embeddings); `dimensions` asks text-embedding-3 models for shorter vectors."""
        # base64 (float32 bytes, as the official SDK asks): a quarter of the JSON floats' size,
        # and decoded at C speed; a gateway that answers floats anyway is read as well.
        payload: dict[str, Any] = {"model": model, "input": list(inputs)}
        payload["encoding_format"] = "base64"
        if dimensions is not None:
            payload["dimensions"] = dimensions
        reply = await self._request("POST", "/v1/embeddings", json_body=payload)
        body = _json_object(reply)
        items = body.get("data")
        if not isinstance(items, list) or len(items) != len(inputs):
            raise MalformedResponse(f"{reply.label}: expected {len(inputs)} embeddings")
        indexed: list[tuple[int, list[float]]] = []
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                raise MalformedResponse(f"{reply.label}: an embedding is not an object")
            index = item.get("index", position)
            indexed.append((index if _is_int(index) else position, _vector(item, reply)))
        indexed.sort(key=lambda pair: pair[0])
        return Embedded([vector for _, vector in indexed], _usage(body.get("usage")))

    async def rerank(
        self, query: str, documents: Sequence[str], *, model: str, top_n: int | None = None
    ) -> list[RerankResult]:
        """Rank `documents` by relevance to `query`, best first (POST /v1/rerank)."""
        payload: dict[str, Any] = {"model": model, "query": query, "documents": list(documents)}
        if top_n is not None:
            payload["top_n"] = top_n
        reply = await self._request("POST", "/v1/rerank", json_body=payload)
        items = _json_object(reply).get("results")
        if not isinstance(items, list):
            raise MalformedResponse(f"{reply.label}: no 'results' list")
        results = []
        for item in items:
            if not isinstance(item, dict):
                raise MalformedResponse(f"{reply.label}: a result is not an object")
            index, score = item.get("index"), item.get("relevance_score")
            if not _is_int(index) or not _is_number(score):
                raise MalformedResponse(f"{reply.label}: a result lacks index or score")
            # The reference shows `document` as a string, the guide as {"text": ...}.
            document = item.get("document")
            if isinstance(document, dict):
                document = document.get("text")
            if not isinstance(document, str):
                document = documents[index] if 0 <= index < len(documents) else None
            results.append(RerankResult(index, float(score), document))
        results.sort(key=lambda r: -r.relevance_score)
        return results

    # ------------------------------------------------------------------ the one HTTP path

    @overload
    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = ...,
        form: FormFactory | None = ...,
        stream: Literal[False] = ...,
        max_bytes: int | None = ...,
    ) -> _Reply: ...

    @overload
    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = ...,
        form: FormFactory | None = ...,
        stream: Literal[True],
        max_bytes: int | None = ...,
    ) -> aiohttp.ClientResponse: ...

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        form: FormFactory | None = None,
        stream: bool = False,
        max_bytes: int | None = None,
    ) -> _Reply | aiohttp.ClientResponse:
        """Send one logical request, retrying 429/5xx/connection failures within the budget.

        `path` is relative to the base URL, or an absolute URL (an image download), which is
        fetched without the Authorization header. With `stream=True` the open 2xx response is
        returned for the caller to read and release. A body over `max_bytes` raises
        ImageRejected without being read whole (only downloads set it).
        """
        absolute = path.startswith(("http://", "https://"))
        url = path if absolute else self._base_url + path
        log_path = urlsplit(url).path  # never the query: signed URLs carry secrets there
        label = f"{method} {log_path}"
        endpoint = "image download" if absolute else path  # bounded label values for metrics
        headers = {"User-Agent": _USER_AGENT, "Accept": "*/*"}
        if not absolute and self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"  # only ever to TokModel itself
        payload: bytes | None = None
        if json_body is not None:
            payload = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"

        slept = 0.0
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            retry_after: float | None = None
            try:
                response, body = await self._send(
                    method, url, headers, payload, form, stream, absolute, max_bytes
                )
            except ConnectionFailed as exc:
                self._log(label, endpoint, type(exc).__name__, started, attempt)
                error: TokModelError = exc
            except TokModelError as exc:  # Timeout: never retried (the request may be running)
                self._log(label, endpoint, type(exc).__name__, started, attempt)
                raise
            else:
                self._log(label, endpoint, str(response.status), started, attempt)
                if 200 <= response.status < 300:
                    if stream:
                        return response
                    return _Reply(response.status, response.content_type, body, label)
                retry_header = response.headers.get("Retry-After")
                error = self._scrubbed(
                    error_for_status(response.status, body, retry_header, path=log_path)
                )
                if response.status in _RETRY_AFTER_STATUSES:
                    retry_after = parse_retry_after(retry_header)
                if not isinstance(error, RateLimited | ServerError):
                    raise error  # 400/401/403/404, or 429 "insufficient_quota": retrying can't help

            if attempt > self._max_retries:
                raise error
            remaining = self._retry_budget - slept
            if retry_after is not None:
                if retry_after > remaining:
                    raise error  # tell the user now rather than stall past the budget
                wait = retry_after
            else:
                if remaining <= 0:
                    raise error
                # Exponential backoff with full jitter, clipped to what is left of the budget.
                ceiling = min(_MAX_BACKOFF, self._backoff_base * 2 ** (attempt - 1))
                wait = min(remaining, self._random.uniform(0, ceiling))
            await asyncio.sleep(wait)
            slept += wait

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        payload: bytes | None,
        form: FormFactory | None,
        stream: bool,
        absolute: bool,
        max_bytes: int | None = None,
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        """One attempt: the response and its body (a 2xx stream's body is left unread)."""
        session = self._ensure_session()
        # FormData can be sent only once, so a multipart body is rebuilt for every attempt.
        data: aiohttp.FormData | bytes | None = form() if form is not None else payload
        timeout = self._stream_timeout if stream else self._plain_timeout
        try:
            response = await session.request(
                method,
                url,
                headers=headers,
                data=data,
                timeout=timeout,
                # Redirects are only followed for downloads, which carry no key.
                allow_redirects=absolute,
            )
            try:
                if stream and 200 <= response.status < 300:
                    return response, b""
                if max_bytes is None:
                    body = await response.read()
                else:
                    body = await _read_at_most(response, max_bytes)
            except BaseException:
                response.close()
                raise
            response.release()
            return response, body
        except TimeoutError as exc:  # before the connection errors: aiohttp's are both
            raise Timeout(f"TokModel did not answer within {self._timeout:g} s.") from exc
        except aiohttp.ClientPayloadError as exc:
            raise ConnectionFailed("The connection to TokModel dropped mid-answer.") from exc
        except (aiohttp.ClientError, OSError) as exc:
            host = urlsplit(url).netloc
            detail = self._scrub(str(exc) or type(exc).__name__)
            raise ConnectionFailed(f"Could not reach TokModel at {host}: {detail}") from exc

    async def _read_stream(self, response: aiohttp.ClientResponse, parts: list[str]) -> bytes:
        """The next bytes of a stream (b"" at the end), with failures mapped to our errors."""
        try:
            return await response.content.readany()
        except TimeoutError as exc:
            raise Timeout(
                f"TokModel sent nothing for {self._timeout:g} s mid-answer.",
                partial="".join(parts),
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise StreamBroken(
                f"TokModel's answer stream broke ({type(exc).__name__}).",
                partial="".join(parts),
            ) from exc

    def _parse_chunk(self, data: str, parts: list[str]) -> ChatDelta | None:
        """One SSE event as a delta; None for chunks with nothing tokbot uses."""
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            if not parts:  # nothing shown yet: the answer is simply unreadable
                raise MalformedResponse("TokModel sent an unreadable stream event.")
            raise StreamBroken("TokModel sent an unreadable stream event.", partial="".join(parts))
        if "error" in event:  # mid-stream errors are undocumented; OpenAI sends this shape
            message, _ = error_message_from_body(data.encode("utf-8"))
            raise StreamBroken(
                self._scrub(f"TokModel failed mid-answer: {message or 'unknown error'}"),
                partial="".join(parts),
            )
        text, finish = "", None
        choices = event.get("choices")
        # Only the first choice (index 0) is tokbot's answer; empty `choices` carry no text.
        first = next(
            (
                c
                for c in (choices if isinstance(choices, list) else [])
                if isinstance(c, dict) and c.get("index", 0) == 0
            ),
            None,
        )
        if first is not None:
            delta = first.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                text = delta["content"]
            reason = first.get("finish_reason")
            finish = reason if isinstance(reason, str) else None
        usage = _usage(event.get("usage"))
        if not text and finish is None and usage is None:
            return None
        return ChatDelta(text=text, usage=usage, finish_reason=finish)

    async def _images(self, reply: _Reply) -> list[GeneratedImage]:
        items = _json_object(reply).get("data")
        if not isinstance(items, list) or not items:
            raise MalformedResponse(f"{reply.label}: no images in the answer")
        images = []
        for item in items:
            if not isinstance(item, dict):
                raise MalformedResponse(f"{reply.label}: an image entry is not an object")
            revised = item.get("revised_prompt")
            if isinstance(item.get("b64_json"), str):
                try:
                    png = base64.b64decode(item["b64_json"], validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise MalformedResponse(f"{reply.label}: bad base64 image") from exc
            elif isinstance(item.get("url"), str):
                # Some gateways ignore response_format; fetch the temporary URL, without the key.
                url = urljoin(self._base_url + "/", item["url"])
                png = (await self._request("GET", url, max_bytes=self._max_image_bytes)).body
            else:
                raise MalformedResponse(f"{reply.label}: an image has neither b64_json nor url")
            kind = self._checked_image(png)
            images.append(GeneratedImage(png, revised if isinstance(revised, str) else None, kind))
        return images

    def _checked_image(self, data: bytes) -> str:
        """The image's MIME type; ImageRejected unless it is a PNG/JPEG/WebP/GIF within the cap."""
        if len(data) > self._max_image_bytes:
            raise ImageRejected(f"it is over {_megabytes(self._max_image_bytes)}.")
        kind = image_type(data)
        if kind is None:
            what = (
                "a web page, not an image"
                if data[:512].lstrip().startswith(b"<")
                else "not a PNG, JPEG, WebP or GIF image"
            )
            raise ImageRejected(f"it is {what} ({len(data):,} bytes).")
        return kind

    # ------------------------------------------------------------------ key hygiene, logging

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _scrubbed(self, error: TokModelError) -> TokModelError:
        """Some gateways echo the key in error text; never let it into an exception."""
        if self._api_key and self._api_key in error.message:
            error.message = self._scrub(error.message)
            error.args = (error.message,)
        return error

    def _log(self, label: str, endpoint: str, outcome: str, started: float, attempt: int) -> None:
        elapsed = time.monotonic() - started
        logger.debug("%s -> %s in %.0f ms (attempt %d)", label, outcome, elapsed * 1000, attempt)
        if self._observer is not None:
            self._observer(endpoint, outcome, elapsed)


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise ImageRejected(f"it is over {_megabytes(limit)}.")
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise ImageRejected(f"it is over {_megabytes(limit)}.")
    return bytes(body)


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:g} MB"


def _names_stream_options(exc: TokModelError) -> bool:
    return exc.param == "stream_options" or "stream_options" in exc.message


def normalise_base_url(base_url: str) -> str:
    """The gateway's root: OpenAI SDKs take `https://tokmodel.com/v1` (TokModel's docs show it
    as the SDK base URL), so people paste that; every path here starts with /v1 or /v1beta."""
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root.removesuffix("/v1").rstrip("/")
        logger.info("TOKMODEL_BASE_URL ends in /v1; using %s (tokbot adds /v1 itself)", root)
    return root


# ---------------------------------------------------------------------- parsing helpers


def _chat_payload(
    messages: Sequence[ChatMessage],
    model: str,
    max_tokens: int | None,
    temperature: float | None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "messages": [_message_payload(m) for m in messages],
    }
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    if temperature is not None:
        payload["temperature"] = temperature
    return payload


def _message_payload(message: ChatMessage) -> dict[str, Any]:
    """A message as JSON: plain text, or (with pictures) OpenAI's content parts, text first."""
    if not message.images:
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}]
    parts += [{"type": "image_url", "image_url": {"url": i.data_url}} for i in message.images]
    return {"role": message.role, "content": parts}


def _form_factory(
    files: Mapping[str, tuple[bytes, str, str]], fields: Mapping[str, str | None]
) -> FormFactory:
    def build() -> aiohttp.FormData:
        # Names as they are (aiohttp would send "my%20file.ogg"; no gateway decodes that).
        form = aiohttp.FormData(quote_fields=False)
        for name, (data, filename, content_type) in files.items():
            form.add_field(name, data, filename=filename, content_type=content_type)
        for name, value in fields.items():
            if value is not None:
                form.add_field(name, value)
        return form

    return build


def _chat_result(reply: _Reply, model: str) -> ChatResult:
    data = _json_object(reply)
    choice = _first_choice(data, reply)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise MalformedResponse(f"{reply.label}: the first choice has no message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise MalformedResponse(f"{reply.label}: the message content is not text")
    finish = choice.get("finish_reason")
    answered_model = data.get("model")
    return ChatResult(
        text=content or "",
        model=answered_model if isinstance(answered_model, str) else model,
        usage=_usage(data.get("usage")),
        finish_reason=finish if isinstance(finish, str) else None,
    )


def _json_any(reply: _Reply) -> Any:

    try:
        return json.loads(reply.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedResponse(
            f"{reply.label}: TokModel's answer is not valid JSON "
            f"({reply.content_type or 'no content type'}, {len(reply.body)} bytes)."
        ) from exc


def _json_object(reply: _Reply) -> dict[str, Any]:
    data = _json_any(reply)
    if not isinstance(data, dict):
        raise MalformedResponse(f"{reply.label}: expected a JSON object")
    return data


def _first_choice(data: Mapping[str, Any], reply: _Reply) -> dict[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse(f"{reply.label}: no choices in the answer")
    first: dict[str, Any] = choices[0]
    return first


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    counts = {k: value.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    ints = {
        k: v if isinstance(v, int) and not isinstance(v, bool) else 0 for k, v in counts.items()
    }
    return Usage(**ints)


def _compact_text(data: object, reply: _Reply) -> str:
    """The text of a compact answer that came as JSON: a string, or a Responses envelope."""
    if isinstance(data, str):
        return data.strip()
    if isinstance(data, dict):
        texts = [
            part.get("text", "")
            for item in data.get("output") or []
            if isinstance(item, dict)
            for part in item.get("content") or []
            if isinstance(part, dict) and part.get("type") == "output_text"
        ]
        if texts:
            return "".join(t for t in texts if isinstance(t, str)).strip()
    raise MalformedResponse(f"{reply.label}: no text in the answer")


def _vector(item: Mapping[str, Any], reply: _Reply) -> list[float]:
    embedding = item.get("embedding")
    if isinstance(embedding, str):  # encoding_format=base64: little-endian float32s
        try:
            raw = base64.b64decode(embedding, validate=True)
            return list(struct.unpack(f"<{len(raw) // 4}f", raw))
        except (binascii.Error, ValueError, struct.error) as exc:
            raise MalformedResponse(f"{reply.label}: bad base64 embedding") from exc
    if not isinstance(embedding, list) or not all(_is_number(v) for v in embedding):
        raise MalformedResponse(f"{reply.label}: an embedding is not a list of numbers")
    return [float(v) for v in embedding]

"""Images TokModel sends are checked before anyone posts them (issue 11, item 19): by their first
bytes (PNG, JPEG, WebP, GIF) and their size, whether they come as base64 or behind a URL."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from bot.tokmodel import ImageRejected, TokModelClient, fake_media
from bot.tokmodel.images import image_type
from bot.wording import describe_tokmodel_error
from tests.test_tokmodel_client import KEY, serve

Routes = dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]
PNG = fake_media.png_image(8, 8, "x")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
GIF = b"GIF89a" + b"\x00" * 32
LOGIN_PAGE = b"<!DOCTYPE html><html><body>Sign in to view this file</body></html>"


def test_image_type_by_magic() -> None:
    assert [image_type(d) for d in (PNG, JPEG, WEBP, GIF)] == [
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
    ]
    assert image_type(LOGIN_PAGE) is None and image_type(b"RIFF\x00\x00\x00\x00WAVE") is None


def _by_url(body: bytes, *, content_type: str = "image/png") -> Routes:
    async def generate(request: web.Request) -> web.StreamResponse:
        return web.json_response({"created": 1, "data": [{"url": "/cdn/i.png?sig=abc"}]})

    async def cdn(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type)

    return {"/v1/images/generations": generate, "/cdn/i.png": cdn}


def _as_b64(body: bytes) -> Routes:
    async def edits(request: web.Request) -> web.StreamResponse:
        data = [{"b64_json": base64.b64encode(body).decode()}]
        return web.json_response({"created": 1, "data": data})

    return {"/v1/images/edits": edits}


async def test_a_web_page_behind_the_url_is_one_line_not_a_posted_file() -> None:
    """An expired link often answers 200 with a login page; it must not be posted as an image."""
    async with serve(_by_url(LOGIN_PAGE, content_type="text/html")) as url:
        async with TokModelClient(url, KEY) as c:
            with pytest.raises(ImageRejected) as info:
                await c.generate_image("x")
    said = describe_tokmodel_error(info.value, model="openai/dall-e-3")
    assert said.startswith("⚠️ TokModel's image can't be posted: it is a web page")
    assert "\n" not in said and "doesn't know the model" not in said


async def test_an_image_over_the_cap_is_refused_without_reading_it_whole() -> None:
    big = PNG + b"\x00" * 4096
    async with serve(_by_url(big)) as url:
        async with TokModelClient(url, KEY, max_image_bytes=1024) as c:
            with pytest.raises(ImageRejected, match="over"):
                await c.generate_image("x")


async def test_a_base64_edit_that_is_not_an_image_is_refused() -> None:
    async with serve(_as_b64(b"\x00\x01 not an image")) as url:
        async with TokModelClient(url, KEY) as c:
            with pytest.raises(ImageRejected, match="not a PNG, JPEG, WebP or GIF"):
                await c.edit_image(PNG, "a hat")


@pytest.mark.parametrize(
    ("data", "content_type", "extension"),
    [(JPEG, "image/jpeg", "jpg"), (WEBP, "image/webp", "webp"), (GIF, "image/gif", "gif")],
    ids=["jpeg", "webp", "gif"],
)
async def test_other_web_formats_are_kept_with_their_type(
    data: bytes, content_type: str, extension: str
) -> None:
    async with serve(_as_b64(data)) as url:
        async with TokModelClient(url, KEY) as c:
            (image,) = await c.edit_image(PNG, "a hat")
    assert (image.png, image.content_type, image.extension) == (data, content_type, extension)

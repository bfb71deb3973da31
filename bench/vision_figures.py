"""What a picture in a question costs: the latency it adds to /ask, against what any client
must pay for it (fetch it from the chat platform, base64 it, send it to TokModel)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from bench.core_figures import ASKER
from bench.harness import Figure, TimedReplier, bench_core, median, stand_in
from bot.core import Core
from bot.domain import Attachment, ConversationKey, Incoming
from bot.tokmodel.fake_vision import solid_png
from bot.tokmodel.types import ChatImage, ChatMessage

PICTURE_BYTES = 1024 * 1024
QUESTION = "What does this screenshot say?"


@dataclass
class DownloadingReplier(TimedReplier):
    """A platform whose attachments are fetched over loopback HTTP, as Slack's and Discord's
    are fetched over the network."""

    http: aiohttp.ClientSession | None = field(default=None, repr=False)

    async def download(self, attachment: Attachment, max_bytes: int) -> bytes:
        assert self.http is not None and attachment.url is not None
        async with self.http.get(attachment.url) as response:
            return await response.read()


@asynccontextmanager
async def file_server(data: bytes) -> AsyncIterator[str]:
    """Serve `data` as image/png at the returned URL."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=data, content_type="image/png")

    app = web.Application()
    app.router.add_get("/shot.png", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/shot.png"
    finally:
        await runner.cleanup()


async def picture_overhead(runs: int) -> list[Figure]:
    """Interleaved: /ask with one 1 MB picture, the same /ask without; and, made directly, the
    download + base64 of the picture and the TokModel call with and without it (200 ms
    latency). The bot's added latency ÷ what that work costs on its own."""
    png = solid_png(256, 256, (30, 60, 220))
    picture = solid_png(256, 256, (30, 60, 220), noise=PICTURE_BYTES - len(png) - 20)
    async with (
        stand_in() as tokmodel,
        bench_core(tokmodel.url) as core,
        file_server(picture) as url,
        aiohttp.ClientSession() as http,
    ):
        await tokmodel.set_latency(0.2)
        attachment = Attachment("shot.png", "image/png", len(picture), url=url, ref="F1")
        await _ask(core, http, "warm-up", attachment)
        with_, without, fetch, encode, send_with, send_without = [], [], [], [], [], []
        for index in range(runs):  # interleaved, so drift in the machine hits all alike
            with_.append(await _ask(core, http, f"p{index}", attachment))
            without.append(await _ask(core, http, f"t{index}", None))
            fetch.append(await _download(http, url))
            encode.append(_encode(picture))
            send_with.append(await _direct(core, picture))
            send_without.append(await _direct(core, None))
    added = median(with_) - median(without)
    download, base64_ = median(fetch), median(encode)
    transfer = median(send_with) - median(send_without)  # base64 included: it is done there
    ratio = added / (download + transfer)
    return [
        Figure(
            "/ask + one 1 MB picture: added latency ÷ (download + base64 + sending it), p50",
            f"{ratio:.2f}; added {added * 1000:.1f} ms (download {download * 1000:.1f} ms, "
            f"base64 {base64_ * 1000:.1f} ms, sending to TokModel incl. base64 "
            f"{transfer * 1000:.1f} ms; ÷ download + base64 alone: "
            f"{added / (download + base64_):.2f})",
            "<= 1.2",
            ratio <= 1.2,
        )
    ]


async def _ask(
    core: Core, http: aiohttp.ClientSession, channel: str, picture: Attachment | None
) -> float:
    key = ConversationKey("bench", "w", channel)
    attachments = (picture,) if picture else ()
    incoming = Incoming(key, ASKER, "ask", QUESTION, attachments=attachments)
    replier = DownloadingReplier(http=http)
    started = time.perf_counter()
    await core.handle(incoming, replier)
    return time.perf_counter() - started


async def _download(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with http.get(url) as response:
        await response.read()
    return time.perf_counter() - started


def _encode(data: bytes) -> float:
    started = time.perf_counter()
    base64.b64encode(data)
    return time.perf_counter() - started


async def _direct(core: Core, picture: bytes | None) -> float:
    images = (ChatImage("image/png", picture),) if picture else ()
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", QUESTION, images)]
    started = time.perf_counter()
    async for _ in core.tokmodel.chat_stream(messages, core.settings.chat_model):
        pass
    return time.perf_counter() - started

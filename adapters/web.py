"""The one aiohttp web server: Slack's Events API (when in HTTP mode), `/healthz`, `/metrics`,
and the admin page (`adapters.admin`, when its password is set).

Adapters add their routes before `start`; `/healthz` reports each registered check.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.metrics import CONTENT_TYPE_LATEST, Metrics

#: Pending connections the kernel queues for us. aiohttp's default, 128, drops the SYNs of a
#: larger burst (e.g. Slack events after an outage), and each dropped client waits 1 s to retry.
#: 1,000 mentions at once are 2,000 connections (each event on its own): 1,024 overflowed in
#: that burst (tens to hundreds of SYNs dropped a run, acks past 1 s). Linux caps it at
#: net.core.somaxconn (4,096 since kernel 5.4).
LISTEN_BACKLOG = 4096

#: Linux's struct tcp_info: for a listening socket, `tcpi_unacked` (a u32 after 8 one-byte
#: fields and 4 u32s) is its accept queue's length.
TCP_INFO = getattr(socket, "TCP_INFO", 11)
TCP_INFO_SIZE = 104
TCPI_UNACKED = 24

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[bool]]
#: Why the bot works only in part (e.g. TokModel rejects the key), or None when it doesn't.
Degradation = Callable[[], str | None]


class WebServer:
    def __init__(
        self, host: str, port: int, *, metrics: Metrics | None = None, reuse_port: bool = False
    ) -> None:
        """`reuse_port`: bind with SO_REUSEPORT, so the workers of `tokbot run --workers N` all
        listen on one port and the kernel spreads new connections across them."""
        self.app = web.Application()
        self._reuse_port = reuse_port
        self._metrics = metrics
        self._host = host
        self._port = port
        self._checks: dict[str, HealthCheck] = {}
        self._degradations: dict[str, Degradation] = {}
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        #: Copies of the listening sockets' descriptors, for `pending_connections`.
        self._listening: list[socket.socket] = []
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/metrics", self._metrics_page)

    def add_health_check(self, name: str, check: HealthCheck) -> None:
        self._checks[name] = check

    def add_degradation(self, name: str, reason: Degradation) -> None:
        """A part that can fail while the process itself is fine: /healthz then answers 200
        with status "degraded" and the reason (a restart would not help, so the container's
        health check must not fail)."""
        self._degradations[name] = reason

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self._host,
            self._port,
            backlog=LISTEN_BACKLOG,
            reuse_port=self._reuse_port or None,
        )
        await site.start()
        server = site._server  # the bound port, when 0 asked for an ephemeral one
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        self._listening = [socket.fromfd(s.fileno(), s.family, s.type) for s in sockets]
        log.info("web server listening on %s:%s", self._host, self.port)

    def pending_connections(self) -> int:
        """Connections the kernel has made for us and we have not accepted yet (Linux: a
        listening socket's TCP_INFO `tcpi_unacked`; 0 elsewhere). uvloop accepts a burst's
        connections a few at a time, so most of it waits there, unseen by the handlers."""
        pending = 0
        for listening in self._listening if sys.platform == "linux" else ():
            try:
                info = listening.getsockopt(socket.IPPROTO_TCP, TCP_INFO, TCP_INFO_SIZE)
            except (OSError, AttributeError):
                return 0
            pending += struct.unpack_from("I", info, TCPI_UNACKED)[0]
        return pending

    async def stop(self) -> None:
        for listening in self._listening:
            listening.close()
        self._listening = []
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        results: dict[str, bool] = {}
        for name, check in self._checks.items():
            try:
                results[name] = await check()
            except Exception:
                log.warning("health check %s failed", name, exc_info=True)
                results[name] = False
        healthy = all(results.values())
        reasons = {name: why for name, reason in self._degradations.items() if (why := reason())}
        status = "unhealthy" if not healthy else "degraded" if reasons else "ok"
        body: dict[str, object] = {"status": status, "checks": results}
        if reasons:
            body["reasons"] = reasons
        return web.json_response(body, status=200 if healthy else 503)

    async def _metrics_page(self, request: web.Request) -> web.Response:
        if self._metrics is None:
            raise web.HTTPNotFound()
        response = web.Response(body=self._metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

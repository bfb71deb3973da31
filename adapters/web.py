"""The one aiohttp web server: Slack's Events API (when in HTTP mode), `/healthz`, `/metrics`,
and the admin page (`adapters.admin`, when its password is set).

Adapters add their routes before `start`; `/healthz` reports each registered check.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.metrics import CONTENT_TYPE_LATEST, Metrics

#: Pending connections the kernel queues for us. aiohttp's default, 128, drops the SYNs of a
#: larger burst (e.g. Slack events after an outage), and each dropped client waits 1 s to retry.
#: 1,000 mentions at once are 2,000 connections (each event on its own): 1,024 overflowed in
#: that burst (tens to hundreds of SYNs dropped a run, acks past 1 s). Linux caps it at
#: net.core.somaxconn (4,096 since kernel 5.4).
LISTEN_BACKLOG = 4096

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
        log.info("web server listening on %s:%s", self._host, self.port)

    async def stop(self) -> None:
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

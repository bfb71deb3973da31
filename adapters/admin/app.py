"""The admin page's aiohttp application, mounted at /admin on tokbot's web server when
TOKBOT_ADMIN_PASSWORD is set (else /admin is a 404).

Its own security, apart from Slack's signed events: every page but the login needs a valid
session cookie; every POST (the only way to change anything) needs the CSRF token of that
session; every answer forbids framing, caching and loading anything from elsewhere."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from adapters.admin.auth import (
    LOCKOUT_NAME,
    LOGIN_COOKIE,
    MAX_FAILED_LOGINS,
    MAX_FAILED_LOGINS_ANYWHERE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Signer,
    client_address,
    lockout_name,
    password_matches,
)
from bot.budgets import format_tokens
from bot.core import Core
from bot.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PREFIX = "/admin"
#: Pages anyone may see and forms anyone may send (with the login form's own CSRF token).
PUBLIC = frozenset({"login", "login-form"})
#: Nothing loads from elsewhere: styles and charts are inline, there is no script.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class AdminApp:
    """The routes' shared parts: settings, the core, templates, login and CSRF checks."""

    def __init__(self, core: Core, settings: Settings) -> None:
        assert settings.admin_password is not None, "the admin page needs a password"
        self.core = core
        self.settings = settings
        self._password = settings.admin_password.get_secret_value()
        self.signer = Signer(self._password)
        self.templates = Environment(
            loader=PackageLoader("adapters.admin", "templates"),
            autoescape=select_autoescape(default=True),
        )
        self.templates.filters["tokens"] = format_tokens
        self.app = web.Application(middlewares=[self._guard])

    def render(
        self,
        request: web.Request,
        template: str,
        *,
        status: int = 200,
        bound: str | None = None,
        **context: Any,
    ) -> web.Response:
        """The page, its forms carrying the CSRF token of `bound` (default: the session's;
        "" for none)."""
        if bound is None:
            bound = self.signer.session_id(request.cookies.get(SESSION_COOKIE)) or ""
        html = self.templates.get_template(template).render(
            csrf=self.signer.csrf_token(bound) if bound else "",
            prefix=PREFIX,
            path=request.path,
            **context,
        )
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    async def form(self, request: web.Request) -> Any:
        """The POSTed form (read once, and CSRF-checked, by the guard)."""
        return await request.post()

    async def live_session(self, request: web.Request) -> str | None:
        """The session id of the request's cookie: signed by us, not expired, not logged out."""
        session = self.signer.session_id(request.cookies.get(SESSION_COOKIE))
        if session is None or await self.core.store.session_ended(session):
            return None
        return session

    # -- login ------------------------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        if await self.live_session(request) is not None:
            return redirect(f"{PREFIX}/")
        return await self._login_form(request)

    async def login(self, request: web.Request) -> web.StreamResponse:
        store = self.core.store
        now = time.time()
        address = client_address(
            request.remote,
            request.headers.getall("X-Forwarded-For", []),
            self.settings.admin_proxy_hops,
        )
        mine, anywhere = lockout_name(address), LOCKOUT_NAME
        locked = await self._locked_out(mine, anywhere, now)
        if locked:
            return await self._login_form(request, error=locked, status=429)
        given = str((await self.form(request)).get("password", ""))
        if not await asyncio.to_thread(password_matches, self._password, given):
            lockout_seconds = self.settings.admin_lockout_minutes * 60
            await store.login_failed(
                mine, max_failures=MAX_FAILED_LOGINS, lockout_seconds=lockout_seconds
            )
            await store.login_failed(
                anywhere, max_failures=MAX_FAILED_LOGINS_ANYWHERE, lockout_seconds=lockout_seconds
            )
            log.warning("admin page: wrong password from %s", address)
            error = " ".join(["Wrong password.", await self._locked_out(mine, anywhere, now)])
            return await self._login_form(request, error=error.strip(), status=401)
        await store.login_succeeded()
        log.info("admin page: logged in from %s", address)
        response = redirect(f"{PREFIX}/")
        self._set_cookie(request, response, SESSION_COOKIE, self.signer.new_session())
        response.del_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    async def _locked_out(self, mine: str, anywhere: str, now: float) -> str:
        """Why logins are refused now ("" when they aren't): too many wrong passwords from this
        address, or from anywhere."""
        store = self.core.store
        everyone = await store.login_locked_until(anywhere)
        if everyone > now:
            return _locked("from many addresses: logins are", everyone, now)
        until = await store.login_locked_until(mine)
        if until > now:
            return _locked("from your address: logins from it are", until, now)
        return ""

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """End this session on every replica (a copy of its cookie no longer works), not only
        in this browser."""
        session = self.signer.session_id(request.cookies.get(SESSION_COOKIE))
        if session is not None:  # (the guard checked it)
            await self.core.store.end_session(
                session, expires_at=time.time() + SESSION_SECONDS + 60
            )
        response = redirect(f"{PREFIX}/login")
        response.del_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    async def _login_form(
        self, request: web.Request, *, error: str = "", status: int = 200
    ) -> web.StreamResponse:
        login_id = self.signer.login_id(request.cookies.get(LOGIN_COOKIE))
        fresh = login_id is None
        if login_id is None:
            cookie = self.signer.new_login()
            login_id = self.signer.login_id(cookie)
        response = self.render(
            request,
            "login.html",
            error=error,
            status=status,
            bound="login:" + str(login_id),
            login_page=True,
        )
        if fresh:
            self._set_cookie(request, response, LOGIN_COOKIE, cookie)
        return response

    def _set_cookie(
        self, request: web.Request, response: web.StreamResponse, name: str, value: str
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=SESSION_SECONDS,
            path=PREFIX,
            httponly=True,
            samesite="Strict",
            secure=self._secure(request),
        )

    def _secure(self, request: web.Request) -> bool:
        mode = self.settings.admin_secure_cookie
        if mode != "auto":
            return mode == "always"
        # Behind a TLS proxy the request itself is plain http: the proxy says what it was.
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        return request.secure or forwarded.lower() == "https"

    # -- the guard --------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await self._checked(request, handler)
        except web.HTTPException as exc:  # e.g. an unknown page
            exc.headers.update(SECURITY_HEADERS)
            raise
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _checked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.name
        if route in PUBLIC:
            login_id = self.signer.login_id(request.cookies.get(LOGIN_COOKIE))
            bound = None if login_id is None else "login:" + login_id
        else:
            session = await self.live_session(request)
            if session is None:
                if request.method == "GET":
                    return redirect(f"{PREFIX}/login")
                return self._refused(request, "Your session has ended: log in again.", 403)
            bound = session
        if request.method == "POST":
            form = await request.post()
            if not self.signer.csrf_ok(_text(form.get("csrf")), bound):
                return self._refused(
                    request,
                    "This form was not sent from this page, or it has expired: reload the "
                    "page and try again.",
                    403,
                )
        return await handler(request)

    def _refused(self, request: web.Request, why: str, status: int) -> web.Response:
        return self.render(request, "refused.html", why=why, status=status, bound="")


def redirect(location: str) -> web.Response:
    """303 See Other: after a form, the browser GETs the page (a reload does not resend)."""
    return web.Response(status=303, headers={"Location": location})


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _locked(whose: str, until: float, now: float) -> str:
    minutes = max(1, round((until - now) / 60))
    return f"Too many wrong passwords in a row {whose} locked for about {minutes} minute(s)."

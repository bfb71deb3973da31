"""The admin page's login, session cookie, CSRF tokens and lock-out, over real HTTP (aiohttp's
client, cookies kept as a browser keeps them)."""

from __future__ import annotations

import io
from collections.abc import Callable

import aiohttp
import pytest

from adapters.admin import mount
from adapters.admin.auth import (
    MAX_FAILED_LOGINS_ANYWHERE,
    SESSION_COOKIE,
    Signer,
    client_address,
    hash_password,
    password_matches,
)
from adapters.web import WebServer
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings, SettingsError, load_settings
from bot.tokmodel.fake import FakeTokModel
from tests.admin.conftest import PASSWORD, AdminSite, browser, csrf_of, log_in
from tests.conftest import API_KEY


def test_hashed_password_form() -> None:
    hashed = hash_password("s3cret-enough-pass")
    assert hashed.startswith("scrypt:16384:8:1:")
    assert password_matches(hashed, "s3cret-enough-pass")
    assert not password_matches(hashed, "s3cret-enough-pasS")
    assert password_matches("plain-password-1", "plain-password-1")
    assert not password_matches("plain-password-1", "plain-password-2")
    settings = load_settings({"TOKBOT_ADMIN_PASSWORD": hashed})
    assert settings.admin_page_enabled and hashed in settings.secrets()
    with pytest.raises(SettingsError, match="12 characters"):
        load_settings({"TOKBOT_ADMIN_PASSWORD": "short"})
    with pytest.raises(SettingsError, match="scrypt:N:r:p:salt:hash"):
        load_settings({"TOKBOT_ADMIN_PASSWORD": "scrypt:x:8:1:salt:hash"})


def test_client_address() -> None:
    assert client_address("127.0.0.2", ["10.0.0.1"], 0) == "127.0.0.2"  # no proxy trusted
    assert client_address("10.0.0.9", ["6.6.6.6, 203.0.113.7"], 1) == "203.0.113.7"
    assert client_address("10.0.0.9", ["6.6.6.6", "203.0.113.7:4711, 10.0.0.8"], 2) == (
        "203.0.113.7"
    )
    assert client_address("10.0.0.9", [], 1) == "10.0.0.9"  # it didn't come through the proxy
    assert client_address("2001:db8::1", [], 0) == "2001:db8::/64"
    assert client_address(None, ["[2001:db8:0:1::5]:443"], 1) == "2001:db8:0:1::/64"
    assert client_address("::ffff:192.0.2.4", [], 0) == "192.0.2.4"
    assert client_address(None, [], 0) == "unknown"


def test_session_cookies_are_signed_and_bound() -> None:
    signer = Signer(PASSWORD)
    cookie = signer.new_session()
    session = signer.session_id(cookie)
    assert session is not None
    assert signer.session_id(cookie[:-2] + "xx") is None
    assert Signer("another password!").session_id(cookie) is None  # password changed
    token = signer.csrf_token(session)
    assert signer.csrf_ok(token, session)
    assert not signer.csrf_ok(token, signer.session_id(signer.new_session()))
    assert not signer.csrf_ok(None, session) and not signer.csrf_ok(token, None)


async def test_login_cookie_and_csrf(admin_site: AdminSite) -> None:
    url = admin_site.url
    async with browser() as http:
        async with http.get(f"{url}/", allow_redirects=False) as first:
            assert first.status == 303 and first.headers["Location"] == "/admin/login"
        wrong = await log_in(http, url, "not the password")
        assert wrong.status == 401
        right = await log_in(http, url)
        assert right.status == 303
        cookie = right.cookies[SESSION_COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/admin"
        assert not cookie["secure"]  # plain http, no X-Forwarded-Proto
        async with http.get(f"{url}/") as overview:
            html = await overview.text()
            assert overview.status == 200 and "Overview" in html
            assert "default-src 'none'" in overview.headers["Content-Security-Policy"]
            assert overview.headers["X-Frame-Options"] == "DENY"
            assert "<script" not in html and "http://" not in html.replace(
                'xmlns="http://www.w3.org/2000/svg"', ""
            )
        form = {"platform": "test", "workspace": "w1", "channel": "c1", "model": ""}
        # A change without the CSRF token, or with another session's, is refused.
        async with http.post(f"{url}/channels", data=form, allow_redirects=False) as missing:
            assert missing.status == 403
        other = Signer(PASSWORD).csrf_token("someone else's session")
        async with http.post(
            f"{url}/channels", data={**form, "csrf": other}, allow_redirects=False
        ) as forged:
            assert forged.status == 403
        assert (await admin_site.core.store.channel_overviews()) == []
    # A forged session cookie (signed with another key) gets the login page, not the data.
    forged_cookie = Signer("guessed password!!").new_session()
    async with browser(cookies={SESSION_COOKIE: forged_cookie}) as http:
        async with http.get(f"{url}/users", allow_redirects=False) as page:
            assert page.status == 303 and page.headers["Location"] == "/admin/login"
        async with http.post(f"{url}/logout", data={}, allow_redirects=False) as post:
            assert post.status == 403


async def test_ten_wrong_passwords_lock_logins(admin_site: AdminSite) -> None:
    url = admin_site.url
    async with browser() as http:
        for attempt in range(10):
            response = await log_in(http, url, f"guess {attempt}")
            assert response.status == 401
        locked = await log_in(http, url)  # even the right password, for a while
        assert locked.status == 429
    async with browser() as http:  # another browser: the same lock
        async with http.get(f"{url}/login") as page:
            token = csrf_of(await page.text())
        async with http.post(f"{url}/login", data={"csrf": token, "password": PASSWORD}) as r:
            assert r.status == 429 and "locked for about 1 minute" in await r.text()


async def test_the_lock_out_is_per_address(admin_site: AdminSite) -> None:
    """A guesser locks out its own address, not the admins: the peer counts (127.0.0.2 here,
    one of loopback's addresses), and X-Forwarded-For is ignored when no proxy is trusted."""
    url = admin_site.url
    guesser = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with browser(connector=guesser) as http:
        for attempt in range(10):
            headers = {"X-Forwarded-For": f"198.51.100.{attempt}"}  # made up: not believed
            http.headers.update(headers)
            assert (await log_in(http, url, f"guess {attempt}")).status == 401
        locked = await log_in(http, url)
        assert locked.status == 429
    async with browser() as http:  # an admin elsewhere (127.0.0.1) still gets in
        assert (await log_in(http, url)).status == 303


async def test_behind_a_trusted_proxy_the_address_it_saw_counts(
    make_settings: Callable[..., Settings], fake: FakeTokModel
) -> None:
    """With TOKBOT_ADMIN_PROXY_HOPS=1 the last X-Forwarded-For entry (the one the proxy wrote)
    is the client; what the client wrote before it is not. Past a much higher ceiling of
    failures from anywhere, every address is locked out."""
    settings = make_settings(
        TOKBOT_ADMIN_PASSWORD=PASSWORD,
        TOKBOT_ADMIN_LOCKOUT_MINUTES="1",
        TOKBOT_ADMIN_PROXY_HOPS="1",
    )
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        server = WebServer("127.0.0.1", 0)
        mount(server, core, settings)
        await server.start()
        url = f"http://127.0.0.1:{server.port}/admin"
        try:
            spoofing = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}
            async with browser(headers=spoofing) as http:
                for attempt in range(10):
                    assert (await log_in(http, url, f"guess {attempt}")).status == 401
                assert (await log_in(http, url)).status == 429
            async with browser(headers={"X-Forwarded-For": "10.9.9.9"}) as http:
                assert (await log_in(http, url)).status == 303  # not 203.0.113.7
            # Many addresses guessing in parallel: each below its own limit, all stopped.
            for n in range(MAX_FAILED_LOGINS_ANYWHERE):
                forwarded = {"X-Forwarded-For": f"2001:db8:{n:x}::1"}  # a /64 each
                async with browser(headers=forwarded) as http:
                    await log_in(http, url, "guess")
            async with browser(headers={"X-Forwarded-For": "192.0.2.1"}) as http:
                async with http.get(f"{url}/login") as page:
                    token = csrf_of(await page.text())
                form = {"csrf": token, "password": PASSWORD}
                async with http.post(f"{url}/login", data=form) as refused:
                    assert refused.status == 429
                    assert "in a row from many addresses" in await refused.text()
        finally:
            await server.stop()


async def test_login_over_https_proxy_sets_a_secure_cookie(admin_site: AdminSite) -> None:
    async with browser(headers={"X-Forwarded-Proto": "https"}) as http:
        async with http.get(f"{admin_site.url}/login") as page:
            assert page.cookies["tokbot_admin_login"]["secure"]


async def test_no_password_no_admin_page(
    make_settings: Callable[..., Settings], fake: FakeTokModel
) -> None:
    settings = make_settings()
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as core:
        server = WebServer("127.0.0.1", 0)
        assert not mount(server, core, settings)
        await server.start()
        try:
            async with browser() as http:
                for path in ("/admin", "/admin/", "/admin/login"):
                    async with http.get(f"http://127.0.0.1:{server.port}{path}") as r:
                        assert r.status == 404
        finally:
            await server.stop()


def test_admin_password_command_prints_a_hash_that_logs_in(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from adapters.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main(["admin-password"]) == 0
    printed = capsys.readouterr().out.strip()
    assert password_matches(printed, "a long enough password")
    assert load_settings({"TOKBOT_ADMIN_PASSWORD": printed}).admin_page_enabled


async def test_the_lock_out_holds_on_another_replica(
    admin_site: AdminSite, fake: FakeTokModel
) -> None:
    """Two processes on one database: ten wrong passwords on one lock logins on the other."""
    settings = admin_site.settings
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as other_core:
        other = WebServer("127.0.0.1", 0)
        mount(other, other_core, settings)
        await other.start()
        try:
            async with browser() as http:
                for attempt in range(10):
                    assert (await log_in(http, admin_site.url, f"guess {attempt}")).status == 401
                other_url = f"http://127.0.0.1:{other.port}/admin"
                assert (await log_in(http, other_url)).status == 429
        finally:
            await other.stop()


async def test_logging_out_ends_the_session_for_a_copied_cookie_too(
    admin_site: AdminSite,
) -> None:
    url = admin_site.url
    async with browser() as http:
        session = (await log_in(http, url)).cookies[SESSION_COOKIE].value
        async with http.get(f"{url}/users") as page:
            token = csrf_of(await page.text())
        async with http.post(f"{url}/logout", data={"csrf": token}, allow_redirects=False) as out:
            assert out.status == 303 and out.headers["Location"] == "/admin/login"
    async with browser(cookies={SESSION_COOKIE: session}) as copy:
        async with copy.get(f"{url}/users", allow_redirects=False) as page:
            assert page.status == 303 and page.headers["Location"] == "/admin/login"
        async with copy.get(f"{url}/login") as login:  # no redirect loop: the login form
            assert login.status == 200 and "log in" in await login.text()
        assert (await log_in(copy, url)).status == 303  # and a new session works
        async with copy.get(f"{url}/users") as page:
            assert page.status == 200

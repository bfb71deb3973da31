"""The admin page's login, session cookie, CSRF tokens and lock-out, over real HTTP (aiohttp's
client, cookies kept as a browser keeps them)."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from adapters.admin import mount
from adapters.admin.auth import SESSION_COOKIE, Signer, hash_password, password_matches
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

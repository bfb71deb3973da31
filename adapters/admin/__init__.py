"""The admin page at /admin: usage, channel settings, users and health, behind a login.
`mount` adds it to tokbot's web server when TOKBOT_ADMIN_PASSWORD is set."""

from __future__ import annotations

from aiohttp import web

from adapters.admin.app import PREFIX, AdminApp, redirect
from adapters.admin.views import Pages
from adapters.web import WebServer
from bot.core import Core
from bot.settings import Settings


def admin_application(core: Core, settings: Settings) -> web.Application:
    admin = AdminApp(core, settings)
    pages = Pages(admin)
    routes = admin.app.router
    routes.add_get("/login", admin.login_page, name="login")
    routes.add_post("/login", admin.login, name="login-form")
    routes.add_post("/logout", admin.logout, name="logout")
    routes.add_get("/", pages.overview, name="overview")
    routes.add_get("/channels", pages.channels, name="channels")
    routes.add_post("/channels", pages.edit_channel, name="edit-channel")
    routes.add_get("/users", pages.users, name="users")
    routes.add_post("/users", pages.edit_user, name="edit-user")
    routes.add_get("/health", pages.health, name="health")
    return admin.app


def mount(server: WebServer, core: Core, settings: Settings) -> bool:
    """Serve the admin page at /admin when TOKBOT_ADMIN_PASSWORD is set; say whether it is."""
    if not settings.admin_page_enabled:
        return False
    server.app.add_subapp(PREFIX, admin_application(core, settings))

    async def to_the_page(request: web.Request) -> web.Response:
        return redirect(f"{PREFIX}/")

    server.app.router.add_get(PREFIX, to_the_page)
    return True

"""`tokbot doctor`: checks the settings, the database, TokModel and each enabled platform, and
says how to fix each problem. Read-only: it never migrates, posts or connects a gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import aiohttp
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, make_url

from bot.settings import Settings
from bot.store import Store, head_revision
from bot.text import one_line
from bot.tokmodel.client import TokModelClient
from bot.tokmodel.errors import (
    ConnectionFailed,
    InsufficientCredits,
    NotFound,
    Timeout,
    TokModelError,
    Unauthorized,
)
from bot.tokmodel.kinds import KIND_NAMES

DISCORD_API = "https://discord.com/api/v10"
# Application flags that grant the message content intent (verified apps get the first).
_MESSAGE_CONTENT_FLAGS = (1 << 18) | (1 << 19)


@dataclass(frozen=True)
class Finding:
    ok: bool
    subject: str
    detail: str
    fix: str = ""


Check = Callable[[Settings], Awaitable[list[Finding]]]


async def run_doctor(settings: Settings, out: TextIO) -> int:
    """Print a report; return 0 when everything checked is fine, 1 otherwise."""
    findings = await collect_findings(settings)
    for finding in findings:
        mark = "✓" if finding.ok else "✗"
        out.write(f"{mark} {finding.subject}: {finding.detail}\n")
        if finding.fix:
            out.write(f"    fix: {finding.fix}\n")
    problems = sum(not f.ok for f in findings)
    out.write("all good\n" if not problems else f"{problems} problem(s) found\n")
    return 1 if problems else 0


async def collect_findings(settings: Settings) -> list[Finding]:
    """Every check's findings, in order (the admin page's health shows the same)."""
    checks: list[Check] = [check_settings, check_database, check_tokmodel]
    if settings.slack_enabled:
        checks.append(check_slack)
    if settings.discord_enabled:
        checks.append(check_discord)
    findings: list[Finding] = []
    for check in checks:
        findings.extend(await check(settings))
    return findings


async def check_settings(settings: Settings) -> list[Finding]:
    findings = []
    if not settings.has_api_key:
        findings.append(
            Finding(
                False,
                "settings",
                "TOKMODEL_API_KEY is not set",
                "create a key in the TokModel console (API Keys → Create key) and set it "
                "in the environment or .env",
            )
        )
    if settings.slack_enabled and not (settings.slack_signing_secret or settings.slack_app_token):
        findings.append(
            Finding(
                False,
                "settings",
                "SLACK_BOT_TOKEN is set but neither SLACK_SIGNING_SECRET nor SLACK_APP_TOKEN",
                "set SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)",
            )
        )
    if settings.slack_app_token and not settings.slack_app_token.get_secret_value().startswith(
        "xapp-"
    ):
        findings.append(
            Finding(
                False,
                "settings",
                "SLACK_APP_TOKEN does not look like an app-level token (xapp-…)",
                "create one under Basic Information → App-Level Tokens with connections:write",
            )
        )
    platforms = [n for n, on in (("slack", settings.slack_enabled),
                                 ("discord", settings.discord_enabled)) if on]  # fmt: skip
    if not platforms:
        findings.append(
            Finding(
                True,
                "settings",
                "no chat platform configured (set SLACK_BOT_TOKEN or DISCORD_TOKEN for "
                "`tokbot run`; `tokbot console` works without)",
            )
        )
    if not findings or all(f.ok for f in findings):
        enabled = ", ".join(platforms) or "console only"
        findings.insert(0, Finding(True, "settings", f"loaded ({enabled})"))
    return findings


async def check_database(settings: Settings) -> list[Finding]:
    url = settings.database_url
    shown = url.split("@")[-1] if "@" in url else url  # never a password
    missing = _missing_sqlite_file(url)
    if missing is not None:  # opening it would create it: the doctor only looks
        return [
            Finding(
                False,
                "database",
                f"{missing} does not exist yet",
                "run `tokbot db upgrade` (tokbot run also does it at start-up)",
            )
        ]
    try:
        store = await Store.open(url, vector_window=settings.vector_window)
    except Exception as exc:
        return [Finding(False, "database", f"cannot open {shown}: {exc}", "check DATABASE_URL")]
    memory: list[Finding] = []
    try:
        await store.ping()
        async with store.engine.connect() as conn:
            current = await conn.run_sync(_current_revision)
        if current == head_revision():
            memory = [await _team_memory(settings, store)]
    except Exception as exc:
        return [
            Finding(
                False,
                "database",
                f"{shown} is not reachable: {type(exc).__name__}",
                "check DATABASE_URL and that the database server is running",
            )
        ]
    finally:
        await store.close()
    head = head_revision()
    if current != head:
        return [
            Finding(
                False,
                "database",
                f"{shown} is at revision {current or 'none'}, the code needs {head}",
                "run `tokbot db upgrade` (tokbot run also does it at start-up)",
            )
        ]
    return [Finding(True, "database", f"{shown} reachable, schema at revision {head}"), *memory]


async def _team_memory(settings: Settings, store: Store) -> Finding:
    """Which recall is in use: embeddings on or off, the vector index, the embedder's queue."""
    queued = await store.vectors.queued()
    if settings.embeddings == "off":
        # The database queues every kept row even so (migration 0011's triggers): kept for
        # when embeddings are turned on, one small entry per message or turn, dropped with it.
        detail = (
            f"embeddings off (TOKBOT_EMBEDDINGS): recall is full-text only; {queued:,} row(s) "
            "queued meanwhile, embedded once it is turned on"
        )
    else:
        index = await store.vectors.probe_index()  # (doctor changes nothing)
        detail = f"embeddings by {settings.embedding_model}; {index}; {queued:,} waiting"
    return Finding(True, "team memory", detail)


def _missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite file DATABASE_URL names and that does not exist, else None."""
    parsed = make_url(url)
    path = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or path in ("", ":memory:") or "mode=memory" in path:
        return None
    if path.startswith("file:") or Path(path).exists():
        return None
    return path


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def check_tokmodel(settings: Settings) -> list[Finding]:
    if not settings.has_api_key:
        return []  # already reported with the settings
    client = TokModelClient(
        settings.tokmodel_base_url, settings.api_key(), timeout=15, max_retries=0
    )
    try:
        async with client:
            listed = await client.list_models()
    except NotFound as exc:
        # Both /v1beta/models and /v1/models are missing: a wrong base URL, not a wrong key.
        return [
            Finding(
                False,
                "TokModel",
                f"{settings.tokmodel_base_url} serves neither /v1beta/models nor /v1/models "
                f"(404: {one_line(exc.message, 120)}), so the key could not be checked",
                "set TOKMODEL_BASE_URL to the gateway's root, e.g. https://tokmodel.com",
            )
        ]
    except Unauthorized:
        return [
            Finding(
                False,
                "TokModel",
                "the API key was rejected (401: invalid, revoked or mistyped)",
                "create a new key in the TokModel console and set TOKMODEL_API_KEY",
            )
        ]
    except InsufficientCredits:
        return [
            Finding(
                False,
                "TokModel",
                "the account is out of credits (403): every request will fail",
                "top up in the TokModel console (Billing → Top up)",
            )
        ]
    except (ConnectionFailed, Timeout):
        return [
            Finding(
                False,
                "TokModel",
                f"cannot reach {settings.tokmodel_base_url}",
                "check TOKMODEL_BASE_URL and the network",
            )
        ]
    except TokModelError as exc:
        return [Finding(False, "TokModel", f"answered {exc.status}: {one_line(exc.message)}")]
    models = {m.id: m for m in listed}
    via = "" if client.models_path == "/v1beta/models" else f" (listed at {client.models_path})"
    findings = [Finding(True, "TokModel", f"key accepted, {len(models)} models available{via}")]
    configured = {
        "TOKBOT_CHAT_MODEL": settings.chat_model,
        "TOKBOT_IMAGE_MODEL": settings.image_model,
        "TOKBOT_TTS_MODEL": settings.tts_model,
        "TOKBOT_TRANSCRIBE_MODEL": settings.transcribe_model,
    }
    for variable, model in configured.items():
        if models and model not in models:
            findings.append(
                Finding(
                    False,
                    "TokModel",
                    f"{variable}={model} is not among TokModel's models",
                    "pick an id from `/model` or GET /v1beta/models",
                )
            )
    chat = models.get(settings.chat_model)
    if chat is not None and not chat.is_chat:
        findings.append(
            Finding(
                False,
                "TokModel",
                f"TOKBOT_CHAT_MODEL={settings.chat_model} is {KIND_NAMES[chat.kind]} model, "
                "not a chat model",
                "pick a chat model from `/model`",
            )
        )
    return findings


async def check_slack(settings: Settings) -> list[Finding]:
    assert settings.slack_bot_token is not None
    url = settings.slack_api_url.rstrip("/") + "/auth.test"
    headers = {"Authorization": f"Bearer {settings.slack_bot_token.get_secret_value()}"}
    try:
        async with aiohttp.ClientSession() as http, http.post(url, headers=headers) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return [Finding(False, "Slack", f"cannot reach {url}: {type(exc).__name__}",
                        "check SLACK_API_URL and the network")]  # fmt: skip
    if not body.get("ok"):
        error = body.get("error", "unknown_error")
        return [
            Finding(
                False,
                "Slack",
                f"auth.test failed: {error}",
                "reinstall the app to the workspace and copy its Bot User OAuth Token "
                "(xoxb-…) into SLACK_BOT_TOKEN",
            )
        ]
    return [Finding(True, "Slack", f"connected as {body.get('user')} in {body.get('team')}")]


async def check_discord(settings: Settings) -> list[Finding]:
    assert settings.discord_token is not None
    base = (settings.discord_api_base or DISCORD_API).rstrip("/")
    headers = {"Authorization": f"Bot {settings.discord_token.get_secret_value()}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(f"{base}/users/@me") as me:
                if me.status == 401:
                    return [
                        Finding(
                            False,
                            "Discord",
                            "the bot token was rejected (401)",
                            "reset the token under Bot in the Developer Portal and set "
                            "DISCORD_TOKEN",
                        )
                    ]
                user = await me.json(content_type=None)
            async with http.get(f"{base}/oauth2/applications/@me") as app_response:
                application = await app_response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return [Finding(False, "Discord", f"cannot reach {base}: {type(exc).__name__}",
                        "check DISCORD_API_BASE and the network")]  # fmt: skip
    findings = [Finding(True, "Discord", f"logged in as {user.get('username', '?')}")]
    flags = application.get("flags") if isinstance(application, dict) else None
    if isinstance(flags, int) and not flags & _MESSAGE_CONTENT_FLAGS:
        findings.append(
            Finding(
                False,
                "Discord",
                "the Message Content intent is not enabled (mentions and voice messages "
                "can't be read)",
                "Developer Portal → your app → Bot → Privileged Gateway Intents → "
                "Message Content Intent",
            )
        )
    return findings

"""Reaching the database at start-up: wait (boundedly) for one that is still starting, and turn
what goes wrong into one line that says how to fix it."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import URL, make_url

log = logging.getLogger(__name__)

RETRY_EVERY_S = 1.0

#: Errors of a server that is not accepting connections yet (docker compose starts the database
#: and the bot together; PostgreSQL answers "the database system is starting up" for a while).
_STARTING = (ConnectionRefusedError, ConnectionResetError, TimeoutError,
             asyncpg.CannotConnectNowError)  # fmt: skip


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and those it wraps (SQLAlchemy wraps driver errors two deep)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_starting(exc: BaseException) -> bool:
    """True when the database looks like it is still starting (worth waiting for)."""
    return any(isinstance(link, _STARTING) for link in _chain(exc))


def _where(url: URL) -> str:
    return f"{url.host or 'localhost'}:{url.port or 5432}"


def describe(exc: BaseException, database_url: str) -> str | None:
    """One line (without the password) that says what failed and how to fix it, or None when
    `exc` is not about reaching the database."""
    url = make_url(database_url)
    for link in _chain(exc):
        if url.get_backend_name() == "sqlite":
            if isinstance(link, OSError) or _cannot_open_sqlite(link):
                return (
                    f"cannot open the SQLite database {url.database}: {link}: fix the path in "
                    "DATABASE_URL, or make its folder writable"
                )
            if isinstance(link, sqlite3.DatabaseError) and "not a database" in str(link):
                return f"{url.database} is not a SQLite database: fix the path in DATABASE_URL"
            continue
        if isinstance(link, asyncpg.InvalidCatalogNameError):
            return (
                f"{link} on {_where(url)}: create it (createdb -h {url.host or 'localhost'} "
                f"-U {url.username or 'postgres'} {url.database}) or fix the name in DATABASE_URL"
            )
        if isinstance(
            link, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
        ):
            return (
                f"PostgreSQL at {_where(url)} refused the login ({link}): fix the user and "
                "password in DATABASE_URL"
            )
        if isinstance(link, socket.gaierror):
            return f"cannot find the database host {url.host!r}: fix the host in DATABASE_URL"
        if isinstance(link, asyncpg.CannotConnectNowError):
            return f"PostgreSQL at {_where(url)} is still starting up ({link}); try again shortly"
        if isinstance(link, OSError | TimeoutError):
            reason = "connection refused" if isinstance(link, ConnectionRefusedError) else link
            return (
                f"cannot reach PostgreSQL at {_where(url)} ({reason}): start it, or fix the "
                "host and port in DATABASE_URL"
            )
    return None


def _cannot_open_sqlite(exc: BaseException) -> bool:
    # SQLite's own words (sqlite3_errstr: SQLITE_CANTOPEN, SQLITE_READONLY); other operational
    # errors (a migration's SQL) are not about reaching the file.
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and (
        "unable to open database file" in text or "readonly database" in text
    )


async def wait_until_reachable(
    ping: Callable[[], Awaitable[None]], database_url: str, wait_seconds: float
) -> None:
    """Ping until the database answers; while it only looks like it is starting, retry for up
    to `wait_seconds` (saying so once). Other errors, and the last one, are raised."""
    deadline = time.monotonic() + wait_seconds
    said = False
    while True:
        try:
            await ping()
            return
        except Exception as exc:
            if not is_starting(exc) or time.monotonic() + RETRY_EVERY_S > deadline:
                raise
            if not said:
                url = make_url(database_url)
                log.warning(
                    "the database at %s is not answering yet; retrying for up to %.0f s",
                    _where(url),
                    wait_seconds,
                )
                said = True
        await asyncio.sleep(RETRY_EVERY_S)

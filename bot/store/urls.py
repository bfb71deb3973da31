"""DATABASE_URL as people write it (`sqlite:///tokbot.db`, `postgres://…`), mapped to the async
drivers tokbot runs on (aiosqlite, asyncpg)."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

EXAMPLES = "sqlite:///./tokbot.db or postgresql://user:password@host:5432/name"

#: Backend (as written) → SQLAlchemy's dialect and the async driver tokbot ships with.
#: `postgres://` is what Heroku-style hosts and many guides hand out.
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


class DatabaseUrlError(ValueError):
    """DATABASE_URL cannot be used; the message says how to write it (never its password)."""


def async_database_url(url: str) -> str:
    """`url` with its scheme replaced by the async driver's (any driver written is replaced:
    tokbot talks to its database only through aiosqlite or asyncpg)."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        raise DatabaseUrlError(f"not a database URL: write {EXAMPLES}")
    backend = scheme.lower().partition("+")[0]
    mapped = _DRIVERS.get(backend)
    if mapped is None:
        raise DatabaseUrlError(
            f"{backend or 'no'} is not a database tokbot runs on: use SQLite or "
            f"PostgreSQL ({EXAMPLES})"
        )
    result = f"{mapped}://{rest}"
    try:
        make_url(result)
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(f"cannot be read as a database URL: write {EXAMPLES}") from None
    return result

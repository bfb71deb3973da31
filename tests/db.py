"""Database fixtures on real databases. conftest imports them:

    from tests.db import database_url, store  # noqa: F401

`database_url` runs each test on a fresh SQLite file and, when TOKBOT_TEST_DATABASE_URL names a
PostgreSQL database (`postgresql+asyncpg://...`), again on that database with an emptied `public`
schema. The PostgreSQL database is reset per test, so test sessions must not share it: under
pytest-xdist each worker gets its own database beside the named one (`<name>_gw0`, ...), created
on first use.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store import Store

POSTGRES_URL_VARIABLE = "TOKBOT_TEST_DATABASE_URL"


_created: set[str] = set()


async def worker_postgres_url(url: str) -> str:
    """The database this pytest-xdist worker uses: the named one when not under xdist, else a
    sibling named after the worker, created (from the named one's server) on first use."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base = make_url(url)
    own = base.set(database=f"{base.database}_{worker}")
    rendered = own.render_as_string(hide_password=False)
    if rendered not in _created:
        engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                exists = await conn.scalar(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"),
                    {"name": own.database},
                )
                if not exists:
                    await conn.execute(text(f'CREATE DATABASE "{own.database}"'))
        finally:
            await engine.dispose()
        _created.add(rendered)
    return rendered


async def reset_postgres(url: str) -> None:
    """Drop everything in the database's `public` schema."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            # A `tokbot run` an earlier test started may still be closing its connections; its
            # locks would deadlock the DROP.
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database (no tables)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/t.db"
        return
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set (a postgresql+asyncpg:// URL)")
    url = await worker_postgres_url(url)
    await reset_postgres(url)
    yield url


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated, empty Store; closed after the test."""
    opened = await Store.open(database_url)
    try:
        await opened.upgrade()
        yield opened
    finally:
        await opened.close()

"""Database fixtures on real databases. conftest imports them:

    from tests.db import database_url, store  # noqa: F401

`database_url` runs each test on a fresh SQLite file and, when TOKBOT_TEST_DATABASE_URL names a
PostgreSQL database (`postgresql+asyncpg://...`), again on that database with an emptied `public`
schema. The PostgreSQL database is reset per test, so test sessions must not share it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store import Store

POSTGRES_URL_VARIABLE = "TOKBOT_TEST_DATABASE_URL"


async def reset_postgres(url: str) -> None:
    """Drop everything in the database's `public` schema."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
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

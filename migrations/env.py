"""Alembic environment for tokbot.

Two ways in:
- programmatic (`bot.store.migrate.upgrade_to_head`, from a running event loop): the caller puts a
  sync Connection in `config.attributes["connection"]`, already in a transaction holding the
  migration lock; we migrate on it and the caller commits.
- the CLI (`alembic upgrade head` in the repo root): the URL comes from `-x url=...`, else the
  `DATABASE_URL` environment variable, else `sqlite+aiosqlite:///./tokbot.db`; we run our own
  event loop on an async engine.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from bot.settings import DEFAULT_DATABASE_URL
from bot.store.migrate import lock_for_migration
from bot.store.models import Base
from bot.store.store import Store

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    return url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=target_metadata, render_as_batch=True, **kwargs)


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    _configure(url=_database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    store = await Store.open(_database_url())
    try:
        async with store.engine.begin() as conn:
            await lock_for_migration(conn)
            await conn.run_sync(do_run_migrations)
    finally:
        await store.close()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(run_async_migrations())
    else:
        do_run_migrations(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

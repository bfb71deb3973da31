"""Schema migrations from code: `upgrade_to_head(engine)` at start-up, no alembic.ini needed.

The Alembic scripts live in the top-level `migrations` package (shipped in the wheel), found by
import so this works from a checkout and from an installed package alike.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

#: Key of the PostgreSQL advisory lock held while migrating ("tokbot" in ASCII).
MIGRATION_LOCK_KEY = 0x746F6B626F74

#: Alembic keeps the running migration in module globals (`alembic.context`), so two upgrades in
#: one process must not interleave, even on different databases. One lock per event loop.
_in_process_locks: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()


def migrations_dir() -> Path:
    """The directory of the `migrations` package (env.py, script.py.mako, versions/)."""
    spec = importlib.util.find_spec("migrations")
    if spec is None or spec.origin is None:
        raise RuntimeError("the tokbot `migrations` package is not importable")
    path = Path(spec.origin).parent
    if not (path / "env.py").is_file():
        raise RuntimeError(f"{path} is not tokbot's migrations package (no env.py)")
    return path


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config built in code; with `connection`, env.py migrates on that connection."""
    cfg = Config()
    # Config values go through configparser interpolation: a "%" in the path must be doubled.
    cfg.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision id of the migration scripts."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migration scripts found")
    return head


async def lock_for_migration(conn: AsyncConnection) -> None:
    """Serialise migrators for the rest of `conn`'s transaction, so two processes starting at
    once do not both try to create the schema: the second waits, then finds it at head."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        # Take the write lock now (waits up to busy_timeout) and make the DDL one transaction.
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Migrate the database to the newest revision; a no-op when it is already there.
    Safe to call from several processes (database lock) and tasks (in-process lock) at once."""
    async with _in_process_lock(), engine.begin() as conn:
        await lock_for_migration(conn)
        await conn.run_sync(_upgrade)


def _in_process_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _in_process_locks.get(loop)
    if lock is None:
        lock = _in_process_locks[loop] = asyncio.Lock()
    return lock


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")

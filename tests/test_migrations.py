"""The Alembic migrations against real databases: from empty to head, idempotent, equal to the
models, safe to start twice at once, and usable from the `alembic` CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.domain import Author, ConversationKey, TurnKind, TurnRole
from bot.store import Store, head_revision
from bot.store.memory import ObservedMessage
from bot.store.migrate import alembic_config
from bot.store.models import Base

REPO = Path(__file__).resolve().parents[1]
TABLES = {
    "conversations",
    "turns",
    "channel_settings",
    "usage_records",
    "processed_events",
    "rate_events",
    "inbox",
    "processes",
    "feedback",
    "tokmodel_errors",
    "admin_logins",
    "admin_logouts",
    "budgets",
    "usage_daily",
    "alerts_sent",
    "admins_seen",
    "turn_images",
    "image_cache",
    "summaries",
    "memory_channels",
    "observed_messages",
    "embeddings",
    "embedding_queue",
}
#: The full-text indexes of migration 0009, which the models do not describe: SQLite's FTS5
#: tables (and their shadow tables), PostgreSQL's GIN expression indexes.
FTS_PREFIXES = ("observed_fts", "turns_fts")


def _described(name: str | None) -> bool:
    name = name or ""
    return not name.startswith(FTS_PREFIXES) and not name.endswith("_fts")


KEY = ConversationKey("slack", "T1", "C1")


async def tables_and_revision(engine: AsyncEngine) -> tuple[set[str], str | None]:
    def read(conn: Connection) -> tuple[set[str], str | None]:
        names = set(inspect(conn).get_table_names()) - {"alembic_version"}
        tables = {name for name in names if _described(name)}
        return tables, MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)


def test_head_revision() -> None:
    assert head_revision() == "0012"


async def test_upgrade_from_empty_creates_all_tables_and_stamps_head(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        assert await tables_and_revision(store.engine) == (set(), None)
        await store.upgrade()
        assert await tables_and_revision(store.engine) == (TABLES, head_revision())
    finally:
        await store.close()


async def test_upgrading_twice_is_a_no_op(store: Store) -> None:
    author = Author("U1", "alice")
    turn_id = await store.add_turn(
        KEY, role=TurnRole.USER, kind=TurnKind.TEXT, content="hi", author=author
    )

    await store.upgrade()

    assert await tables_and_revision(store.engine) == (TABLES, head_revision())
    assert [turn.id for turn in await store.history(KEY)] == [turn_id]


async def test_models_match_the_head_revision(store: Store) -> None:
    def differences(conn: Connection) -> list[object]:
        context = MigrationContext.configure(
            conn, opts={"include_name": lambda name, kind, _parent: _described(name)}
        )
        return list(compare_metadata(context, Base.metadata))

    async with store.engine.connect() as conn:
        assert await conn.run_sync(differences) == []


async def test_downgrade_to_base_and_back(store: Store) -> None:
    def downgrade(conn: Connection) -> None:
        command.downgrade(alembic_config(conn), "base")

    async with store.engine.begin() as conn:
        await conn.run_sync(downgrade)
    assert await tables_and_revision(store.engine) == (set(), None)

    await store.upgrade()
    assert await tables_and_revision(store.engine) == (TABLES, head_revision())


async def test_processes_starting_at_once_all_migrate(database_url: str) -> None:
    stores = [await Store.open(database_url) for _ in range(3)]
    try:
        # Without the migration lock this fails or, on PostgreSQL, hangs: hence the timeout.
        await asyncio.wait_for(asyncio.gather(*(store.upgrade() for store in stores)), 30)
        assert await tables_and_revision(stores[0].engine) == (TABLES, head_revision())
    finally:
        for store in stores:
            await store.close()


async def test_upgrades_of_several_databases_in_one_process(tmp_path: Path) -> None:
    """Alembic's module-global context must not be shared by interleaved upgrades."""
    stores = [await Store.open(f"sqlite+aiosqlite:///{tmp_path}/{i}.db") for i in range(3)]
    try:
        await asyncio.wait_for(asyncio.gather(*(store.upgrade() for store in stores)), 30)
        for store in stores:
            assert await tables_and_revision(store.engine) == (TABLES, head_revision())
    finally:
        for store in stores:
            await store.close()


def alembic_cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_alembic_cli_upgrade_head(database_url: str) -> None:
    done = await asyncio.to_thread(alembic_cli, "upgrade", "head", database_url=database_url)
    assert done.returncode == 0, done.stderr

    store = await Store.open(database_url)
    try:
        assert await tables_and_revision(store.engine) == (TABLES, head_revision())
        await store.upgrade()  # the application agrees it is at head
    finally:
        await store.close()


async def test_alembic_cli_prints_sql_offline(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/never-created.db"
    done = await asyncio.to_thread(alembic_cli, "upgrade", "head", "--sql", database_url=url)
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE turns" in done.stdout
    assert not (tmp_path / "never-created.db").exists()


async def test_voice_modes_are_allowed_and_others_refused_by_the_database(store: Store) -> None:
    """0005: the CHECK on channel_settings takes answer and speak (and still refuses the rest);
    a downgrade turns those channels back into plain transcription."""
    insert = text(
        "INSERT INTO channel_settings (platform, workspace, channel, transcription_mode, "
        "updated_by, updated_at) VALUES ('slack', 'T1', :channel, :mode, 'U1', 0)"
    )
    async with store.engine.begin() as conn:
        for mode in ("answer", "speak"):
            await conn.execute(insert, {"channel": f"C-{mode}", "mode": mode})
    with pytest.raises(IntegrityError):
        async with store.engine.begin() as conn:
            await conn.execute(insert, {"channel": "C-shout", "mode": "shout"})

    def downgrade(conn: Connection) -> None:
        command.downgrade(alembic_config(conn), "0004")

    async with store.engine.begin() as conn:
        await conn.run_sync(downgrade)
        modes = (await conn.execute(text("SELECT transcription_mode FROM channel_settings"))).all()
        assert {m for (m,) in modes} == {"transcribe"}
    with pytest.raises(IntegrityError):
        async with store.engine.begin() as conn:
            await conn.execute(insert, {"channel": "C-again", "mode": "answer"})
    await store.upgrade()


async def test_messages_and_turns_stored_before_0012_are_recalled_after_it(store: Store) -> None:
    """0012 rebuilds SQLite's full-text indexes with the channel in them: what was indexed
    before is found after, per channel, and a deletion after reaches the rebuilt index."""

    def downgrade(conn: Connection) -> None:
        command.downgrade(alembic_config(conn), "0011")

    async with store.engine.begin() as conn:
        await conn.run_sync(downgrade)
    other = ConversationKey(KEY.platform, KEY.workspace, "C2")
    for n, key in enumerate((KEY, other)):
        await store.memory.observe(
            ObservedMessage(key, f"m{n}", "U1", "Bob", f"deploy window {n}", 1.0 + n)
        )
    await store.add_turn(
        KEY,
        role=TurnRole.USER,
        kind=TurnKind.TEXT,
        content="deploy on Tuesday",
        author=Author("U1", "alice"),
    )
    await store.upgrade()
    found = await store.memory.candidates(KEY, ["deploy"], limit=5)
    assert sorted(c.content for c in found) == ["deploy on Tuesday", "deploy window 0"]
    assert await store.memory.delete(KEY, "m0")
    found = await store.memory.candidates(KEY, ["deploy"], limit=5)
    assert [c.content for c in found] == ["deploy on Tuesday"]

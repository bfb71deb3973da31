"""How the store uses its PostgreSQL connections (issue 16: round trips per statement): reads
run without a transaction around them, and a pooled connection that died while idle is replaced
before use, not failed on (what `pool_pre_ping` did at every checkout)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store import Store, liveness

pytestmark = pytest.mark.postgres


def only_postgres(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's connection pool")


async def backend_pid(store: Store) -> int:
    async with store.database.reading() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_read_is_not_wrapped_in_a_transaction(store: Store) -> None:
    only_postgres(store)
    # txid_current(): the current transaction's id (one is assigned if it has none).
    xid = text("SELECT txid_current()")
    async with store.database.reading() as conn:
        reads = [(await conn.execute(xid)).scalar_one() for _ in range(2)]
    assert reads[0] != reads[1]  # each statement a transaction of its own: no BEGIN, ROLLBACK
    async with store.database.writing() as conn:  # a write's statements share one
        writes = [(await conn.execute(xid)).scalar_one() for _ in range(2)]
    assert writes[0] == writes[1]


async def test_a_connection_killed_while_idle_is_replaced_before_use(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_postgres(store)
    pid = await backend_pid(store)  # the pool keeps this connection
    other = create_async_engine(store.engine.url.render_as_string(hide_password=False))
    async with other.connect() as admin:
        await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        while (
            await admin.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
        ).scalar_one():
            await asyncio.sleep(0.01)  # until the server has let it go
    await other.dispose()
    monkeypatch.setattr(liveness, "IDLE_PING_AFTER_S", 0.0)  # it counts as idle long enough
    assert await backend_pid(store) != pid  # a new connection, no error

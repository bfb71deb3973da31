"""Checking a pooled PostgreSQL connection is alive only when it may not be.

SQLAlchemy's `pool_pre_ping` pings at every checkout; with asyncpg a ping is three round trips
(BEGIN, an empty statement, ROLLBACK: sqlalchemy/dialects/postgresql/asyncpg.py), and a Slack
mention checks out about five connections: 15 of its 37 round trips were pings (issue 16,
bench/mention_figures.py on PostgreSQL). Here a connection is pinged only when it sat unused in
the pool for `IDLE_PING_AFTER_S` or more: one that died while idle (the server restarted, a
proxy closed it) is replaced before use, as pre-ping does. A connection used moments ago is
trusted; should the server have gone away in that moment, the first statement fails, and
SQLAlchemy then invalidates the whole pool ("Disconnect Handling - Optimistic" in its pooling
docs), so later checkouts get new connections. The pool hands out the most recently used
connection first (`pool_use_lifo`), so a quiet bot keeps reusing one hot connection and a burst
finds all of them hot.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine

IDLE_PING_AFTER_S = 1.0
_IDLE_SINCE = "tokbot_idle_since"


def ping_when_idle(engine: AsyncEngine) -> None:
    """Ping `engine`'s connections at checkout once they were idle `IDLE_PING_AFTER_S`."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)  # None: a new connection
        if since is None or time.monotonic() - since < IDLE_PING_AFTER_S:
            return
        try:
            dbapi_connection.ping()  # (the asyncpg adapter's; runs in SQLAlchemy's greenlet)
        except Exception as exc:
            # As a failed pre-ping: every pooled connection is replaced (the server restarted,
            # most likely), and the pool checks out a new one for this caller.
            raise InvalidatePoolError("a pooled connection died while idle") from exc

"""Failed admin-page logins in a row (per name: the admin page counts per client address and
overall), and sessions ended by logging out, kept in the database so
the lock-out and the logout hold across replicas. A mixin of `Store`."""

from __future__ import annotations

import time

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.database import Database
from bot.store.models import AdminLoginRow, AdminLogoutRow


class LoginQueries:
    engine: AsyncEngine
    _db: Database

    async def login_locked_until(self, name: str) -> float:
        """Epoch seconds until which logins as `name` are refused (0: never locked)."""
        async with self._db.reading() as conn:
            row = await conn.execute(
                select(AdminLoginRow.locked_until).where(AdminLoginRow.name == name)
            )
            until = row.scalar_one_or_none()
        return float(until or 0.0)

    async def login_failed(self, name: str, *, max_failures: int, lockout_seconds: float) -> float:
        """Count a failed login; at the `max_failures`-th in a row, lock logins for
        `lockout_seconds` and start counting again. Return the lock's end (0: not locked).
        One atomic increment, so failures on several replicas at once are all counted."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        increment = (
            dialect.insert(AdminLoginRow)
            .values(name=name, failures=1, locked_until=0.0)
            .on_conflict_do_update(
                index_elements=["name"], set_={"failures": AdminLoginRow.failures + 1}
            )
            .returning(AdminLoginRow.failures)
        )
        async with self._db.writing() as conn:
            failures = int((await conn.execute(increment)).scalar_one())
            if failures < max_failures:
                return 0.0
            until = time.time() + lockout_seconds
            await conn.execute(
                update(AdminLoginRow)
                .where(AdminLoginRow.name == name)
                .values(failures=0, locked_until=until)
            )
        return until

    async def login_succeeded(self) -> None:
        """A right password ends every run of failures (those of addresses still locked out
        stay locked): the rows go, so counters of addresses that once guessed do not pile up.
        A guesser gains at most one more run per admin login from this."""
        await self._db.write(delete(AdminLoginRow).where(AdminLoginRow.locked_until < time.time()))

    async def end_session(self, session_id: str, *, expires_at: float) -> None:
        """Refuse `session_id` from now until `expires_at` (when it expires anyway); forget
        sessions that have expired since."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        async with self._db.writing() as conn:
            await conn.execute(
                delete(AdminLogoutRow).where(AdminLogoutRow.expires_at < time.time())
            )
            await conn.execute(
                dialect.insert(AdminLogoutRow)
                .values(session_id=session_id, expires_at=expires_at)
                .on_conflict_do_nothing()
            )

    async def session_ended(self, session_id: str) -> bool:
        """Whether `session_id` was ended by logging out."""
        async with self._db.reading() as conn:
            found = await conn.execute(
                select(AdminLogoutRow.session_id).where(AdminLogoutRow.session_id == session_id)
            )
            return found.scalar_one_or_none() is not None

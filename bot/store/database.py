"""How the store runs its SQLAlchemy statements.

`EngineDatabase` runs them through SQLAlchemy's async engine: PostgreSQL (asyncpg), and SQLite
databases in memory. `SqliteDatabase` runs them on two aiosqlite connections of its own, one
reading and one writing, after SQLAlchemy compiled them for SQLite (once per statement).

Why two ways for SQLite: SQLAlchemy's async adapter makes four thread hops per statement
(cursor, execute, fetch, close) plus a connection checkout, a commit and a reset per transaction,
about 0.5 ms a statement here; aiosqlite's `execute_fetchall` is one hop, about 0.07 ms. Every
/ask runs four to six statements, two of them before TokModel is asked (bench/README)."""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, NamedTuple, Protocol

import aiosqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import Compiled

Params = Mapping[str, Any]


class Rows:
    """A statement's result, fetched in full: its rows (attribute access by column name) and
    how many rows it changed."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: Sequence[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def all(self) -> list[Any]:
        return list(self._rows)

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise LookupError(f"expected at most one row, got {len(self._rows)}")
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        row = self.one_or_none()
        if row is None:
            raise LookupError("expected one row, got none")
        return row

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


class Session(Protocol):
    """Statements run one after another on one connection (inside a transaction, for writes).
    A list of parameter sets runs the statement once per set, rows in that order."""

    async def execute(
        self, stmt: ClauseElement, params: Params | Sequence[Params] | None = None
    ) -> Rows: ...

    async def execute_each(self, statements: Sequence[tuple[ClauseElement, Params]]) -> list[Rows]:
        """Several statements, one after another, their results in that order (on SQLite in
        one trip to the connection's thread)."""


class Database(Protocol):
    dialect: Dialect

    def reading(self) -> AbstractAsyncContextManager[Session]:
        """Reads; each statement sees what was committed when it started."""

    def writing(self) -> AbstractAsyncContextManager[Session]:
        """One transaction, committed at the end, rolled back on an exception. On SQLite the
        writers of this process queue for it here (SQLite has one writer at a time; its own
        busy handler would make them sleep and retry in steps of up to 100 ms)."""

    async def write(
        self, stmt: ClauseElement, params: Params | None = None, *, urgent: bool = False
    ) -> Rows:
        """One statement in a transaction of its own (as `writing`). `urgent`: ahead of the
        writers already queued (an event being acknowledged waits on it)."""

    async def write_together(
        self, stmt: ClauseElement, params: Params, *, urgent: bool = False
    ) -> Rows:
        """As `write`; but where writers queue (SQLite), calls with the same statement that
        wait together share one transaction (a group commit)."""

    async def write_each(
        self, statements: Sequence[tuple[ClauseElement, Params]], *, first_changes: bool = False
    ) -> list[Rows]:
        """Statements in one transaction, their results in order (on SQLite in one trip to the
        writer's thread, where `writing` makes one per statement, BEGIN and COMMIT included).
        `first_changes`: roll back and raise NothingChanged when the first changes no row."""

    async def close(self) -> None: ...


class _EngineSession:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def execute(
        self, stmt: ClauseElement, params: Params | Sequence[Params] | None = None
    ) -> Rows:
        result = await self._conn.execute(stmt, params)  # type: ignore[call-overload]
        rows = result.all() if result.returns_rows else []
        return Rows(rows, result.rowcount)

    async def execute_each(self, statements: Sequence[tuple[ClauseElement, Params]]) -> list[Rows]:
        return [await self.execute(stmt, params) for stmt, params in statements]


class EngineDatabase:
    """Statements through SQLAlchemy's async engine. With `ordinary` set (PostgreSQL), reads and
    writes that are not `urgent` hold at most that many of the pool's connections at once, so
    an urgent write (an event being acknowledged) never waits for a connection behind answers'
    work: under a burst they had taken all of the pool's, and an acknowledgement waited out its
    30 s (Slack got a 500)."""

    def __init__(self, engine: AsyncEngine, *, ordinary: int | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._ordinary = asyncio.Semaphore(ordinary) if ordinary else None
        # PostgreSQL runs reads, and single-statement writes, without BEGIN and COMMIT (or
        # ROLLBACK) around them: two round trips fewer each (issue 16). A statement outside a
        # transaction is one of its own, atomic; a read sees what was committed when it
        # started (as `reading` promises; READ COMMITTED inside a transaction gives no more).
        # The same pool; a connection's level is reset when it returns.
        self._autocommit = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else None
        )

    @asynccontextmanager
    async def _turn(self, urgent: bool) -> AsyncIterator[None]:
        """A place among the ordinary users of the pool (none needed when urgent), waited for
        as long as the pool itself would wait for a connection."""
        if self._ordinary is None or urgent:
            yield
            return
        try:
            async with asyncio.timeout(self.engine.pool.timeout()):  # type: ignore[attr-defined]
                await self._ordinary.acquire()
        except TimeoutError:
            raise SQLAlchemyTimeoutError("no database connection was free in time") from None
        try:
            yield
        finally:
            self._ordinary.release()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Session]:
        async with self._turn(False), (self._autocommit or self.engine).connect() as conn:
            yield _EngineSession(conn)

    def writing(self) -> AbstractAsyncContextManager[Session]:
        return self._writing(urgent=False)

    @asynccontextmanager
    async def _writing(self, *, urgent: bool) -> AsyncIterator[Session]:
        if self._write_lock is None:
            async with self._turn(urgent), self.engine.begin() as conn:
                yield _EngineSession(conn)
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield _EngineSession(conn)

    async def write(
        self, stmt: ClauseElement, params: Params | None = None, *, urgent: bool = False
    ) -> Rows:
        if self._autocommit is not None:  # (PostgreSQL has no single writer to queue for)
            async with self._turn(urgent), self._autocommit.connect() as conn:
                return await _EngineSession(conn).execute(stmt, params)
        async with self._writing(urgent=urgent) as session:
            return await session.execute(stmt, params)

    async def write_together(
        self, stmt: ClauseElement, params: Params, *, urgent: bool = False
    ) -> Rows:
        return await self.write(stmt, params, urgent=urgent)

    async def write_each(
        self, statements: Sequence[tuple[ClauseElement, Params]], *, first_changes: bool = False
    ) -> list[Rows]:
        async with self.writing() as session:
            results = []
            for stmt, params in statements:
                results.append(await session.execute(stmt, params))
                if first_changes and len(results) == 1 and results[0].rowcount == 0:
                    raise NothingChanged  # (rolls the transaction back)
            return results

    async def close(self) -> None:
        pass  # the engine is the store's to dispose


class WriterLock:
    """SQLite's one writer, in arrival order, except that urgent writers go first: an event
    is acknowledged only once it is stored, and must not queue behind a busy process's
    answers (each waits for the one statement running, at most)."""

    def __init__(self) -> None:
        self._held = False
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._normal: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def held(self) -> bool:
        return self._held

    @asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncIterator[None]:
        if self._held:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            line = self._urgent if urgent else self._normal
            line.append(waiter)
            try:
                await waiter  # `_release` hands the lock over: it stays held
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed over just as we were cancelled: pass it on
                elif waiter in line:
                    line.remove(waiter)
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        for line in (self._urgent, self._normal):
            while line:
                waiter = line.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._held = False


class _Compiled(NamedTuple):
    compiled: Compiled
    row: type[tuple[Any, ...]] | None  # a named tuple of the result's columns, if it has rows


class _SqliteSession:
    def __init__(self, database: SqliteDatabase, conn: aiosqlite.Connection) -> None:
        self._database = database
        self._conn = conn

    async def execute(
        self, stmt: ClauseElement, params: Params | Sequence[Params] | None = None
    ) -> Rows:
        if params is None or isinstance(params, Mapping):
            return await self._execute_one(stmt, params or {})
        rows: list[Any] = []
        changed = 0
        for one in params:
            result = await self._execute_one(stmt, one)
            rows.extend(result.all())
            changed += result.rowcount
        return Rows(rows, changed)

    async def execute_each(self, statements: Sequence[tuple[ClauseElement, Params]]) -> list[Rows]:
        bound, rows = [], []
        for stmt, params in statements:
            compiled, row = self._database.compiled(stmt, params)
            sql, values, names = _bound(compiled, params)
            bound.append((sql, [values[name] for name in names]))
            rows.append(row)
        # One trip to the thread, not one per statement (the /ask path's read: issue 16).
        results = await self._conn._execute(_each, self._conn, bound)  # type: ignore[no-untyped-call]
        return [
            Rows([row._make(one) for one in fetched] if row is not None else [], changed)  # type: ignore[attr-defined]
            for row, (fetched, changed) in zip(rows, results, strict=True)
        ]

    async def _execute_one(self, stmt: ClauseElement, params: Params) -> Rows:
        compiled, row = self._database.compiled(stmt, params)
        sql, values, names = _bound(compiled, params)
        before = self._conn.total_changes
        fetched = await self._conn.execute_fetchall(sql, [values[name] for name in names])
        # Exact: a session's connection runs one statement at a time (writes hold the lock).
        changed = self._conn.total_changes - before
        if row is None:
            return Rows([], changed)
        return Rows([row._make(one) for one in fetched], changed)  # type: ignore[attr-defined]


def _bound(compiled: Any, params: Params) -> tuple[str, dict[str, Any], Sequence[str]]:
    """The SQL, its parameter values (after the types' bind processing) and their order."""
    if compiled in _PLAIN:  # no IN lists to expand, no values to convert: the quick way
        return compiled.string, compiled.construct_params(params), compiled.positiontup
    state = compiled.construct_expanded_state(params)
    values = state.parameters
    for name, process in state.processors.items():
        if name in values:
            values[name] = process(values[name])
    if not state.processors and state.statement == compiled.string:
        _PLAIN.add(compiled)
    return state.statement, values, state.positiontup


#: Compiled statements whose parameters go to the driver as they are (bind processing and
#: expansion depend on the statement's types and shape, not on the values).
_PLAIN: weakref.WeakSet[Any] = weakref.WeakSet()


class NothingChanged(LookupError):
    """`write_each(first_changes=True)`: its first statement changed no row (rolled back)."""


def _each(
    conn: aiosqlite.Connection,
    statements: Sequence[tuple[str, Sequence[Any]]],
    first_changes: bool = False,
) -> list[tuple[list[Any], int]]:
    """On the connection's thread: `statements` one after another; each one's rows and how
    many rows it changed (`first_changes`: NothingChanged when the first changed none)."""
    db = conn._conn
    results = []
    for sql, values in statements:
        before = db.total_changes
        fetched = db.execute(sql, values).fetchall()
        results.append((fetched, db.total_changes - before))
        if first_changes and len(results) == 1 and results[0][1] == 0:
            raise NothingChanged
    return results


def _in_one_transaction(
    conn: aiosqlite.Connection,
    statements: Sequence[tuple[str, Sequence[Any]]],
    first_changes: bool = False,
) -> list[tuple[list[Any], int]]:
    """On the connection's thread: `statements` in one transaction; each one's rows and how
    many rows it changed. Committed or rolled back here, so a caller cancelled meanwhile
    leaves no transaction open."""
    db = conn._conn
    db.execute("BEGIN IMMEDIATE")
    try:
        results = _each(conn, statements, first_changes)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return results


async def _rollback(conn: aiosqlite.Connection) -> None:
    try:
        await conn.execute_fetchall("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "no transaction" not in str(exc):
            raise  # else none was open after all: its COMMIT had been queued first


class SqliteDatabase:
    """Statements on a SQLite file through aiosqlite: one connection reads, one writes (WAL
    lets them run side by side). SQLAlchemy compiles each statement once."""

    def __init__(
        self,
        engine: AsyncEngine,
        path: str,
        pragmas: Sequence[str],
        *,
        on_connect: Callable[[aiosqlite.Connection], Awaitable[None]] | None = None,
    ) -> None:
        self.dialect = engine.dialect
        self._path = path
        self._pragmas = pragmas
        self._on_connect = on_connect  # (e.g. loads sqlite-vec: bot.store.vector_index_sqlite)
        self._compiled: dict[tuple[int, frozenset[str] | None], _Compiled] = {}
        self._statements: dict[int, ClauseElement] = {}  # keeps cached statements' ids valid
        self._reader: aiosqlite.Connection | None = None
        self._writer: aiosqlite.Connection | None = None
        self._open_lock = asyncio.Lock()
        self._write_lock = WriterLock()
        self._unfinished = False  # a transaction was begun and not yet committed or rolled back
        #: `write_together`: the calls waiting for the writer, per statement, and their tasks.
        self._batches: dict[int, list[tuple[Params, asyncio.Future[Rows]]]] = {}
        self._batch_tasks: set[asyncio.Task[None]] = set()

    def compiled(self, stmt: ClauseElement, params: Params) -> _Compiled:
        # An INSERT without .values() takes its columns from the parameters.
        keys = frozenset(params) if getattr(stmt, "is_insert", False) else None
        cache_key = (id(stmt), keys)
        cached = self._compiled.get(cache_key)
        if cached is None or self._statements.get(id(stmt)) is not stmt:
            compiled = stmt.compile(
                dialect=self.dialect, column_keys=None if keys is None else list(keys)
            )
            columns = list(getattr(stmt, "exported_columns", {}).keys())
            row = collections.namedtuple("Row", columns, rename=True) if columns else None
            cached = _Compiled(compiled, row)
            if len(self._compiled) > 1024:  # statements built per call: don't keep them all
                self._compiled.clear()
                self._statements.clear()
            self._compiled[cache_key] = cached
            self._statements[id(stmt)] = stmt
        return cached

    async def _connection(self, which: str) -> aiosqlite.Connection:
        conn = self._reader if which == "reader" else self._writer
        if conn is not None:
            return conn
        async with self._open_lock:
            conn = self._reader if which == "reader" else self._writer
            if conn is None:
                # Autocommit: `writing` spells its transactions out (BEGIN IMMEDIATE ... COMMIT).
                conn = await aiosqlite.connect(self._path, isolation_level=None)
                try:
                    for pragma in self._pragmas:
                        await conn.execute(pragma)
                    if self._on_connect is not None:
                        await self._on_connect(conn)
                except BaseException:  # (e.g. cancelled meanwhile: not left open, unowned)
                    await asyncio.shield(conn.close())
                    raise
                if which == "reader":
                    self._reader = conn
                else:
                    self._writer = conn
            return conn

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Session]:
        yield _SqliteSession(self, await self._connection("reader"))

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[Session]:
        async with self._write_lock.hold():
            conn = await self._writer_connection()
            self._unfinished = True
            await conn.execute_fetchall("BEGIN IMMEDIATE")
            try:
                yield _SqliteSession(self, conn)
            except BaseException:
                await _rollback(conn)
                self._unfinished = False
                raise
            await conn.execute_fetchall("COMMIT")
            self._unfinished = False

    async def write(
        self, stmt: ClauseElement, params: Params | None = None, *, urgent: bool = False
    ) -> Rows:
        # Autocommit: SQLite makes the statement its transaction.
        async with self._write_lock.hold(urgent=urgent):
            return await _SqliteSession(self, await self._writer_connection()).execute(stmt, params)

    async def write_together(
        self, stmt: ClauseElement, params: Params, *, urgent: bool = False
    ) -> Rows:
        """As `write`, but the calls with this statement that wait for the writer together run
        in one transaction, in one trip to the writer's thread (a group commit): a burst of
        200 events is stored in a few trips rather than 200, each of which waited for the busy
        event loop to notice it was done (issue 16). One failing statement fails them all."""
        batch = self._batches.get(id(stmt))
        if batch is None and not self._write_lock.held:  # nothing to wait with: at once
            return await self.write(stmt, params, urgent=urgent)
        done: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        if batch is None:
            batch = self._batches[id(stmt)] = []
            task = asyncio.create_task(self._write_batch(stmt, batch, urgent))
            self._batch_tasks.add(task)
            task.add_done_callback(self._batch_tasks.discard)
        batch.append((params, done))
        return await done

    async def _write_batch(
        self, stmt: ClauseElement, batch: list[tuple[Params, asyncio.Future[Rows]]], urgent: bool
    ) -> None:
        try:
            async with self._write_lock.hold(urgent=urgent):
                if self._batches.get(id(stmt)) is batch:
                    del self._batches[id(stmt)]  # calls from now on make the next batch
                waiting = [(params, done) for params, done in batch if not done.done()]
                if not waiting:
                    return  # every caller was cancelled
                bound, rows = [], []
                for params, _ in waiting:
                    compiled, row = self.compiled(stmt, params)
                    sql, values, names = _bound(compiled, params)
                    bound.append((sql, [values[name] for name in names]))
                    rows.append(row)
                conn = await self._writer_connection()
                # (aiosqlite runs a function on its thread only through this private method.)
                results = await conn._execute(_in_one_transaction, conn, bound)  # type: ignore[no-untyped-call]
        except BaseException as exc:
            if self._batches.get(id(stmt)) is batch:
                del self._batches[id(stmt)]
            for _, done in batch:
                if not done.done():
                    if isinstance(exc, asyncio.CancelledError):
                        done.cancel()
                    else:
                        done.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, done), row, (fetched, changed) in zip(waiting, rows, results, strict=True):
            if not done.done():
                made = [row._make(one) for one in fetched] if row is not None else []  # type: ignore[attr-defined]
                done.set_result(Rows(made, changed))

    async def write_each(
        self, statements: Sequence[tuple[ClauseElement, Params]], *, first_changes: bool = False
    ) -> list[Rows]:
        bound, rows = [], []
        for stmt, params in statements:
            compiled, row = self.compiled(stmt, params)
            sql, values, names = _bound(compiled, params)
            bound.append((sql, [values[name] for name in names]))
            rows.append(row)
        async with self._write_lock.hold():
            conn = await self._writer_connection()
            results = await conn._execute(_in_one_transaction, conn, bound, first_changes)  # type: ignore[no-untyped-call]
        return [
            Rows([row._make(one) for one in fetched] if row is not None else [], changed)  # type: ignore[attr-defined]
            for row, (fetched, changed) in zip(rows, results, strict=True)
        ]

    async def _writer_connection(self) -> aiosqlite.Connection:
        """The writing connection, outside any transaction. A writer cancelled before its
        COMMIT or ROLLBACK went out leaves its transaction open: end it first. (Its statements
        are queued on the connection's thread ahead of ours, so the order holds.)"""
        conn = await self._connection("writer")
        if self._unfinished:
            await _rollback(conn)
            self._unfinished = False
        return conn

    async def close(self) -> None:
        if self._batch_tasks:
            await asyncio.gather(*self._batch_tasks, return_exceptions=True)
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

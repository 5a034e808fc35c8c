"""The database handle: a synchronous SQLAlchemy engine driven from asyncio through a small thread pool.

Why threads and not the async engine: the work per request is one short transaction; sync SQLAlchemy with
psycopg 3 (PostgreSQL) or the standard sqlite3 module runs the same code on both engines, and the async SQLite
driver (aiosqlite) is not a dependency. The pool has as many threads as connections, so a request waits for a
connection in asyncio (the executor queue), never blocking the event loop.

SQLite is the embedded default for one API process: one thread (SQLite has one writer anyway), WAL, a busy
timeout. PostgreSQL is the production engine for N API processes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

T = TypeVar("T")


class DatabaseClosed(RuntimeError):
    """The handle was closed (the process is stopping): a background loop that meets this ends instead of
    retrying, since no retry can succeed."""


def normalise_url(url: str) -> str:
    """``postgresql://`` (what tools print) means psycopg 3 here; everything else is passed on as given."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, pool_size: int = 5) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 15})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=15000")
            cur.close()

        return engine
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=0, pool_recycle=1800)
    _ping_when_idle(engine)
    return engine


# A pooled connection idle longer than this is pinged before use (the server may have restarted or a firewall
# dropped it). Busy connections are not: under load a ping on every checkout is one more round trip per
# transaction, which is most of what a short transaction costs.
IDLE_PING_S = 10.0


def _ping_when_idle(engine: Engine) -> None:
    @sa.event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_S:
            return
        try:
            cur = dbapi_conn.cursor()
            cur.execute("SELECT 1")
            cur.close()
            dbapi_conn.rollback()  # the ping opened a transaction; a connection leaves the pool outside one
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another one.
            raise sa.exc.DisconnectionError(str(exc)) from exc


class Database:
    def __init__(self, url: str, pool_size: int = 5) -> None:
        self.engine = make_engine(url, pool_size)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")  # the same pool
        workers = 1 if self.is_sqlite else pool_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cloud-db")
        self.closed = False

    async def _on_thread(self, run: Callable[[], T]) -> T:
        if self.closed:
            raise DatabaseClosed("the database handle is closed")
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, run)
        except RuntimeError as exc:  # closed between the check and the submit
            raise DatabaseClosed("the database handle is closed") from exc
        return await future

    async def tx(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in one transaction on a DB thread: committed when it returns, rolled back on error."""

        def run() -> T:
            with self.engine.begin() as conn:
                return fn(conn)

        return await self._on_thread(run)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in autocommit mode: for one statement (a lookup, or a single conditional UPDATE),
        which is atomic on its own; saves the BEGIN and COMMIT round trips of ``tx``."""

        def run() -> T:
            with self._autocommit.connect() as conn:
                return fn(conn)

        return await self._on_thread(run)

    async def statements(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` where each statement is atomic on its own: autocommit on PostgreSQL (no BEGIN and
        COMMIT round trips), one transaction on SQLite. For work whose writes that must happen together are one
        statement on PostgreSQL (data-modifying CTEs, e.g. ``changes.execute_recorded``) but two on SQLite,
        which has no writing CTEs; there a transaction costs no round trips."""
        return await (self.tx(fn) if self.is_sqlite else self.read(fn))

    def tx_sync(self, fn: Callable[[Connection], T]) -> T:
        """The same, for the CLI (no event loop)."""
        with self.engine.begin() as conn:
            return fn(conn)

    async def ping(self) -> bool:
        try:
            await self.tx(lambda c: c.execute(sa.text("SELECT 1")).scalar())
        except sa.exc.SQLAlchemyError:
            return False
        return True

    def close(self) -> None:
        self.closed = True
        self._executor.shutdown(wait=True)
        self.engine.dispose()

"""The PostgreSQL backend of the store (`store: postgresql://user:pass@host:port/db`).

A small pool of psycopg 3 connections (autocommit; a transaction is explicit): write
transactions run one at a time per process and start by taking one advisory lock of the
database, so writers are serialized as SQLite's BEGIN IMMEDIATE serializes them, and every
read-modify-write of a tick or a command sees what the writer before it committed. Readers take
their own connection and do not wait for a writer.

A connection the server dropped (a restart, a failover) fails the transaction it was in with a
StoreError (nothing of that transaction is kept; the caller retries the whole of it, as the loop
does next tick); it and every idle connection are discarded, and the next call connects again.
Every message names the database by its URL with the password masked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq

from engine.errors import StoreError
from engine.redact import MASK
from engine.store.dialect import POSTGRESQL_DIALECT, _pyformat
from engine.store.location import redacted_url, url_password

POOL_SIZE = 4  # the loop's tick, the live view or API reading beside it, and a command or two
_WRITER_LOCK = 0x6F7063746C  # "opctl": the advisory lock every write transaction takes


class PgConnection:
    """A psycopg connection that takes the store's statements (`?` placeholders)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, statement: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        if not args:
            return self._conn.execute(statement)  # type: ignore[arg-type]  # no placeholders to translate
        return self._conn.execute(_pyformat(statement), args)  # type: ignore[arg-type]

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cursor = self._conn.cursor()
        cursor.executemany(_pyformat(statement), list(rows))  # type: ignore[arg-type]
        return cursor


class PostgresDatabase:
    """The store's connections to one PostgreSQL database."""

    dialect = POSTGRESQL_DIALECT

    def __init__(self, url: str, *, timeout: float, pool_size: int = POOL_SIZE) -> None:
        self.location = redacted_url(url)
        self._url = url
        self._password = url_password(url)
        self._timeout = timeout
        self._pool_size = pool_size
        self._writer = threading.Lock()
        self._idle_lock = threading.Lock()
        self._idle: list[psycopg.Connection[Any]] = []
        self._release(self._connect())  # now: a wrong password or an unreachable host is said on open

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        with self._writer:
            conn = self._checkout()
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITER_LOCK,))
                    yield PgConnection(conn)
            except psycopg.Error as exc:
                raise self._failed(conn, exc) from None
            finally:
                self._release(conn)

    @contextmanager
    def reading(self) -> Iterator[PgConnection]:
        conn = self._checkout()
        try:
            yield PgConnection(conn)
        except psycopg.Error as exc:
            raise self._failed(conn, exc) from None
        finally:
            self._release(conn)

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # ------------------------------------------------------------------ the pool

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=max(1, round(self._timeout)), application_name="opctl"
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the ticket store {self.location}: {self._text(exc)}") from None
        try:
            # a writer waiting for another replica's transaction gives up like SQLite's busy timeout
            conn.execute(f"SET lock_timeout = {int(self._timeout * 1000)}")
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"cannot use the ticket store {self.location}: {self._text(exc)}") from None
        return conn

    def _checkout(self) -> psycopg.Connection[Any]:
        with self._idle_lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed and not conn.broken:
                    return conn
                conn.close()
        return self._connect()

    def _release(self, conn: psycopg.Connection[Any]) -> None:
        usable = not conn.closed and not conn.broken and conn.info.transaction_status == pq.TransactionStatus.IDLE
        with self._idle_lock:
            if usable and len(self._idle) < self._pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _failed(self, conn: psycopg.Connection[Any], exc: psycopg.Error) -> StoreError:
        if conn.broken or conn.closed:
            # the server went away: the idle connections are most likely dead too
            self.close()
            return StoreError(
                f"the ticket store {self.location} dropped the connection ({self._text(exc)}); "
                "nothing of this change was kept, the next one connects again"
            )
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return StoreError(
                f"the ticket store {self.location} is locked by another writer ({self._text(exc)}); "
                "is another `opctl run` writing to it?"
            )
        return StoreError(f"the ticket store {self.location} failed: {self._text(exc)}")

    def _text(self, exc: psycopg.Error) -> str:
        """The driver's message on one line, without the password."""
        diag = getattr(exc, "diag", None)
        text = (diag.message_primary if diag is not None else None) or str(exc)
        text = " ".join(text.split())
        if self._password:
            text = text.replace(self._password, MASK)
        return text.replace(self._url, self.location)

"""The connection every part of the Store shares: opening (0600, WAL), migrating, transactions,
closing, the mapping of SQLite errors to StoreError, and the rows every part reads or writes
(tickets, proposals, events).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from engine.errors import NotLeader, StoreError
from engine.store.migrations import MIGRATIONS, SCHEMA_VERSION, _statements
from engine.store.records import (
    _PROPOSAL_COLUMNS,
    _TICKET_COLUMNS,
    Proposal,
    Ticket,
    _dumps,
    _proposal_from_row,
    _ticket_from_row,
)

BUSY_TIMEOUT_S = 5.0
LEADER = "leader"  # the name of the one lease the engines of a store compete for


class StoreBase:
    """The shared state of a Store (set by `Store.__init__`) and what every part of it uses."""

    path: Path
    _clock: Callable[[], float]
    _lock: threading.Lock
    _conn: sqlite3.Connection
    # Fencing (engine.store.leasing): a store whose engine competes for the lease writes only
    # while `_fence` is the current lease's token, checked inside each write transaction.
    _fencing: bool = False
    _fence: int | None = None

    # The database's clock, in Unix seconds: the one expression every lease time comes from, so
    # replicas never compare their own wall clocks. Another backend substitutes its own (now()).
    DB_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
    # what locks the lease row against a takeover until the writing transaction ends; SQLite's
    # BEGIN IMMEDIATE already holds the one write lock (a backend with row locks: " FOR SHARE")
    FENCE_LOCK = ""

    # ------------------------------------------------------------------ opening

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # create the file ourselves so it is never world-readable, not even for a moment
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot create the ticket store {self.path}: {exc.strerror or exc}") from None
        try:
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the ticket store {self.path}: {exc}") from None
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys=ON")
            # WAL + NORMAL survives a killed process (the engine's failure mode); only an OS
            # crash may lose the last ticks, never corrupt the file
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(
                f"{self.path} is not an opctl ticket store ({exc}); point `store:` at another file"
            ) from None
        if str(mode).lower() != "wal":
            conn.close()
            raise StoreError(f"cannot put the ticket store {self.path} in WAL mode (got {mode!r})")
        return conn

    def _migrate(self) -> None:
        if self._stored_version() == SCHEMA_VERSION:
            return  # nothing to do: no write lock needed (readers open while the engine writes)
        with self._transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at REAL NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] or 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the ticket store {self.path} has schema version {version}, but this opctl only "
                    f"knows up to version {SCHEMA_VERSION}; upgrade opctl to use it"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _statements(MIGRATIONS[target - 1]):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (target, self._clock()))

    def _stored_version(self) -> int:
        with self._reading() as conn:
            exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
            if exists is None:
                return 0
            return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)

    def schema_version(self) -> int:
        with self._reading() as conn:
            return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, *, fenced: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; the write lock is taken up front so it cannot fail half-way.
        While fencing, it first checks that this replica's token is the current lease's (NotLeader
        otherwise), so a write and the check are one atomic step; `fenced=False`: the lease itself."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from None
            try:
                if fenced and self._fencing:
                    self._check_fence(conn)
                yield conn
            except BaseException as exc:
                _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise _store_error(self.path, exc) from None
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    _rollback(conn)
                    raise _store_error(self.path, exc) from None

    def _check_fence(self, conn: sqlite3.Connection) -> None:
        row = conn.execute(
            f"SELECT holder, token, expires_at > {self.DB_NOW} FROM leases WHERE name = ?{self.FENCE_LOCK}", (LEADER,)
        ).fetchone()
        fence = self._fence
        if fence is None or row is None or int(row[1]) != fence or not row[2]:
            self._fence = None
            if fence is None:
                raise NotLeader("this replica does not hold the leader lease: it observes, another replica acts")
            holder = "nobody (it expired)" if row is None or int(row[1]) == fence else f"{row[0]} (token {row[1]})"
            raise NotLeader(f"this replica's lease (token {fence}) is no longer current; the lease is held by {holder}")

    def db_now(self) -> float:
        """The database's clock (Unix seconds): what lease times are measured by."""
        with self._reading() as conn:
            return float(conn.execute(f"SELECT {self.DB_NOW}").fetchone()[0])

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from None

    # ------------------------------------------------------------------ rows every part reads or writes

    @staticmethod
    def _ticket(conn: sqlite3.Connection, ticket_id: int) -> Ticket | None:
        row = conn.execute(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        return None if row is None else _ticket_from_row(row)

    def _require(self, conn: sqlite3.Connection, ticket_id: int, verb: str) -> Ticket:
        ticket = self._ticket(conn, ticket_id)
        if ticket is None:
            raise StoreError(f"cannot {verb} ticket {ticket_id}: there is no ticket with that id in {self.path}")
        return ticket

    @staticmethod
    def _proposal(conn: sqlite3.Connection, proposal_id: int) -> Proposal | None:
        row = conn.execute(f"SELECT {_PROPOSAL_COLUMNS} FROM proposals WHERE id = ?", (proposal_id,)).fetchone()
        return None if row is None else _proposal_from_row(row)

    def _ticket_resolved(self, conn: sqlite3.Connection, ticket_id: int, *, actor: str, at: float) -> None:
        """Called in the transaction that resolves a ticket; the acting part ends its proposals."""

    @staticmethod
    def _insert_event(
        conn: sqlite3.Connection,
        kind: str,
        ticket_id: int | None,
        invariant: str | None,
        entity_key: str | None,
        actor: str,
        at: float,
        data: Mapping[str, Any],
    ) -> int:
        cursor = conn.execute(
            "INSERT INTO events (ticket_id, invariant, entity_key, kind, actor, at, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ticket_id, invariant, entity_key, kind, actor, at, _dumps(data)),
        )
        return int(cursor.lastrowid)  # type: ignore[arg-type]


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the ticket store {path} is locked by another writer ({text}); is another `opctl run` using it?"
        )
    return StoreError(f"the ticket store {path} failed: {text}")

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

from engine.errors import StoreError
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


class StoreBase:
    """The shared state of a Store (set by `Store.__init__`) and what every part of it uses."""

    path: Path
    _clock: Callable[[], float]
    _lock: threading.Lock
    _conn: sqlite3.Connection

    # ------------------------------------------------------------------ opening

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _refuse_foreign_file(self.path)
            # create the file ourselves so it is never world-readable, not even for a moment
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            _owner_only(self.path)  # a store that existed keeps no looser mode
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
        for suffix in ("-wal", "-shm"):  # SQLite creates them with the umask's mode
            _owner_only(Path(f"{self.path}{suffix}"))
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
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the write lock is taken up front so it cannot fail half-way."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from None
            try:
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


SQLITE_HEADER = b"SQLite format 3\x00"


def _refuse_foreign_file(path: Path) -> None:
    """A file named as the store that is not a SQLite database is refused, not overwritten."""
    try:
        with open(path, "rb") as existing:
            head = existing.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise StoreError(f"the ticket store {path} is a directory; point `store:` at a file") from None
    # An empty file is one being created right now (by opctl, in another process, before SQLite
    # writes its header) or left empty: SQLite makes it a store either way.
    if head and head != SQLITE_HEADER:
        raise StoreError(f"{path} is not an opctl ticket store (it is not a SQLite database); point `store:` at another file")


def _owner_only(path: Path) -> None:
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        return

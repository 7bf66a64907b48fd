"""The SQLite backend of the store: one file, created 0600 (it holds observed values), in WAL
mode so readers (`opctl tickets`) never wait for the engine; write transactions take the write
lock up front (BEGIN IMMEDIATE) so they cannot fail half-way."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import StoreError
from engine.store.dialect import SQLITE_DIALECT


class SqliteFile:
    """One connection to one store file, shared by the threads of one process (under a lock)."""

    dialect = SQLITE_DIALECT

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self.location = str(path)
        self._lock = threading.Lock()
        self._conn = _connect(path, busy_timeout)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
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
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _create_store_file(path)
        _refuse_foreign_file(path)
        _owner_only(path)  # a store that existed keeps no looser mode
    except OSError as exc:
        raise StoreError(f"cannot create the ticket store {path}: {exc.strerror or exc}") from None
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the ticket store {path}: {exc}") from None
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys=ON")
        # WAL + NORMAL survives a killed process (the engine's failure mode); only an OS
        # crash may lose the last ticks, never corrupt the file
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path} is not an opctl ticket store ({exc}); point `store:` at another file") from None
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreError(f"cannot put the ticket store {path} in WAL mode (got {mode!r})")
    for suffix in ("-wal", "-shm"):  # SQLite creates them with the umask's mode
        _owner_only(Path(f"{path}{suffix}"))
    return conn


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


def _create_store_file(path: Path) -> None:
    """A new store appears whole: made under a temporary name (0600, never world-readable, not
    even for a moment), given its SQLite header, then linked into place. So the store's name
    never names an empty file opctl made, and an empty file there is someone else's (refused);
    replicas creating one store at once both open the one that was linked first."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    try:
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # writes the header page
        finally:
            conn.close()
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process linked its own first: that one is the store
    finally:
        for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
            leftover.unlink(missing_ok=True)


def _refuse_foreign_file(path: Path) -> None:
    """A file named as the store that is not a SQLite database is refused, not overwritten."""
    try:
        with open(path, "rb") as existing:
            head = existing.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise StoreError(f"the ticket store {path} is a directory; point `store:` at a file") from None
    if head == b"":
        raise StoreError(f"the ticket store {path} is an empty file, not an opctl ticket store; remove it (opctl creates the store) or point `store:` at another file")
    if head != SQLITE_HEADER:
        raise StoreError(f"{path} is not an opctl ticket store (it is not a SQLite database); point `store:` at another file")


def _owner_only(path: Path) -> None:
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        return

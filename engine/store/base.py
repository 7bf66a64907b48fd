"""The connection every part of the Store shares: its backend (a SQLite file, or a PostgreSQL
database: engine.store.sqlite_file, engine.store.postgres), migrating, transactions, closing, and
the rows every part reads or writes (tickets, proposals, events).

Every statement is written once, in SQLite's dialect with `?` placeholders; what differs for
PostgreSQL goes through `self._dialect` (engine.store.dialect).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol, Self

from engine.errors import StoreError
from engine.store.dialect import Dialect
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


class Conn(Protocol):
    """What the store's parts run statements on: sqlite3.Connection, or
    engine.store.postgres.PgConnection; `execute` returns a DB-API cursor."""

    def execute(self, statement: str, args: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


class Backend(Protocol):
    """A store's database: `location` names it in messages (a path, or a URL without its password)."""

    location: str
    dialect: Dialect

    def transaction(self) -> AbstractContextManager[Conn]: ...

    def reading(self) -> AbstractContextManager[Conn]: ...

    def close(self) -> None: ...


class StoreBase:
    """The shared state of a Store (set by `Store.__init__`) and what every part of it uses."""

    path: Path | None  # the SQLite file; None for PostgreSQL
    location: str  # the store as messages name it: the file, or the URL with its password masked
    _clock: Callable[[], float]
    _backend: Backend
    _dialect: Dialect

    # ------------------------------------------------------------------ opening

    def _migrate(self) -> None:
        if self._stored_version() == SCHEMA_VERSION:
            return  # nothing to do: no write lock needed (readers open while the engine writes)
        with self._transaction() as conn:
            for statement in self._dialect.migration(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at REAL NOT NULL)"
            ):
                conn.execute(statement)
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] or 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the ticket store {self.location} has schema version {version}, but this opctl only "
                    f"knows up to version {SCHEMA_VERSION}; upgrade opctl to use it"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _statements(MIGRATIONS[target - 1]):
                    for translated in self._dialect.migration(statement):
                        conn.execute(translated)
                conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (target, self._clock()))

    def _stored_version(self) -> int:
        with self._reading() as conn:
            if conn.execute(self._dialect.table_exists(), ("schema_version",)).fetchone() is None:
                return 0
            return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)

    def schema_version(self) -> int:
        with self._reading() as conn:
            return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[Conn]:
        """One write transaction; writers are serialized up front so it cannot fail half-way."""
        with self._backend.transaction() as conn:
            yield conn

    @contextmanager
    def _reading(self) -> Iterator[Conn]:
        with self._backend.reading() as conn:
            yield conn

    # ------------------------------------------------------------------ rows every part reads or writes

    @staticmethod
    def _ticket(conn: Conn, ticket_id: int) -> Ticket | None:
        row = conn.execute(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        return None if row is None else _ticket_from_row(row)

    def _require(self, conn: Conn, ticket_id: int, verb: str) -> Ticket:
        ticket = self._ticket(conn, ticket_id)
        if ticket is None:
            raise StoreError(f"cannot {verb} ticket {ticket_id}: there is no ticket with that id in {self.location}")
        return ticket

    @staticmethod
    def _proposal(conn: Conn, proposal_id: int) -> Proposal | None:
        row = conn.execute(f"SELECT {_PROPOSAL_COLUMNS} FROM proposals WHERE id = ?", (proposal_id,)).fetchone()
        return None if row is None else _proposal_from_row(row)

    def _ticket_resolved(self, conn: Conn, ticket_id: int, *, actor: str, at: float) -> None:
        """Called in the transaction that resolves a ticket; the acting part ends its proposals.
        A tick calls it only for the tickets `_resolution_work` names."""

    def _resolution_work(self, conn: Conn) -> set[int]:
        """The open tickets whose resolution `_ticket_resolved` has something to do for (one
        query per tick instead of one per resolved ticket)."""
        return set()

    @staticmethod
    def _insert_events(conn: Conn, rows: list[tuple[Any, ...]]) -> None:
        """Append events whose ids nobody needs, as one batch (one round trip on PostgreSQL):
        rows of (ticket_id, invariant, entity_key, kind, actor, at, data JSON), in order."""
        if rows:
            conn.executemany(
                "INSERT INTO events (ticket_id, invariant, entity_key, kind, actor, at, data) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
            )
            rows.clear()

    @staticmethod
    def _insert_event(
        conn: Conn,
        kind: str,
        ticket_id: int | None,
        invariant: str | None,
        entity_key: str | None,
        actor: str,
        at: float,
        data: Mapping[str, Any],
    ) -> int:
        return int(conn.execute(
            "INSERT INTO events (ticket_id, invariant, entity_key, kind, actor, at, data) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (ticket_id, invariant, entity_key, kind, actor, at, _dumps(data)),
        ).fetchone()[0])


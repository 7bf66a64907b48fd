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

from engine.errors import NotLeader, StoreError
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
LEADER = "leader"  # the name of the one lease the engines of a store compete for


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
    # Fencing (engine.store.leasing): a store whose engine competes for the lease writes only
    # while `_fence` is the current lease's token, checked inside each write transaction.
    _fencing: bool = False
    _fence: int | None = None
    _lease_ttl: float = 0.0

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
    def _transaction(self, *, fenced: bool = True) -> Iterator[Conn]:
        """One write transaction; writers are serialized up front so it cannot fail half-way.
        While fencing, it first checks that this replica's token is the current lease's (NotLeader
        otherwise), so a write and the check are one atomic step; `fenced=False`: the lease itself."""
        with self._backend.transaction() as conn:
            if fenced and self._fencing:
                self._check_fence(conn)
            yield conn

    def _check_fence(self, conn: Conn) -> None:
        """The fence, and a renewal: a write under the current token extends the lease (a long tick
        that keeps writing keeps leading); a write under a token another replica has replaced is
        refused. A lease that lapsed but nobody took is still this replica's: no other replica
        can have written since. The UPDATE also locks the lease row, so no takeover commits
        before this transaction ends."""
        now = self._dialect.now
        renewed = conn.execute(
            f"UPDATE leases SET renewed_at = {now}, expires_at = {now} + ? WHERE name = ? AND token = ?",
            (self._lease_ttl, LEADER, -1 if self._fence is None else self._fence),
        ).rowcount
        if renewed == 1:
            return
        fence, self._fence = self._fence, None
        if fence is None:
            raise NotLeader("this replica does not hold the leader lease: it observes, another replica acts")
        row = conn.execute("SELECT holder, token FROM leases WHERE name = ?", (LEADER,)).fetchone()
        holder = "nobody" if row is None else f"{row[0]} (token {row[1]})"
        raise NotLeader(f"this replica's lease (token {fence}) is no longer current; the lease is held by {holder}")

    def db_now(self) -> float:
        """The database's clock (Unix seconds): what lease times are measured by."""
        with self._reading() as conn:
            return float(conn.execute(f"SELECT {self._dialect.now}").fetchone()[0])

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


"""The durable record: tickets, the append-only event log and invariant states, in SQLite.

One file per subject, created 0600 (it holds observed values), in WAL mode so `opctl tickets`
can read while the engine writes. Each tick is written in one transaction (states, tickets,
events), so a crash leaves the previous tick or the new one, never half of it; pending and
firing states are restored on start, so a restart neither re-opens nor loses tickets.

Ticket statuses: `open` and `resolved` today; later issues add statuses between them
(diagnosing, proposed, verifying, escalated). Every status other than `resolved` counts as open,
and at most one open ticket exists per (invariant, entity key) (a partial unique index).
Events are append-only: `add_event` is the only writer and triggers refuse UPDATE and DELETE.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.models import Invariant
from engine.errors import StoreError
from engine.evaluate import Entity, EntityState, StateMap, Transition

RESOLVED = "resolved"
OPEN = "open"
TICKET_STATUSES = (OPEN, RESOLVED)  # grows with later issues; only `resolved` is closed
BUSY_TIMEOUT_S = 5.0

# Schema migrations: MIGRATIONS[n] takes a file from version n to n + 1. Append only; never edit
# a migration that has shipped.
MIGRATIONS: tuple[str, ...] = (
    # v1: tickets, the event log, invariant states
    """
    CREATE TABLE tickets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        invariant TEXT NOT NULL,
        entity_key TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        severity TEXT NOT NULL,
        status TEXT NOT NULL,
        held INTEGER NOT NULL DEFAULT 0,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        resolved_at REAL,
        occurrences INTEGER NOT NULL DEFAULT 1,
        message TEXT NOT NULL DEFAULT '',
        snapshot TEXT NOT NULL DEFAULT '{}',
        previous_ticket_id INTEGER REFERENCES tickets(id)
    );
    CREATE UNIQUE INDEX tickets_one_open ON tickets(invariant, entity_key) WHERE status != 'resolved';
    CREATE INDEX tickets_by_key ON tickets(invariant, entity_key, id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id INTEGER REFERENCES tickets(id),
        invariant TEXT,
        entity_key TEXT,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        at REAL NOT NULL,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_by_ticket ON events(ticket_id, id);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TABLE entity_states (
        invariant TEXT NOT NULL,
        entity_key TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'pending', 'firing')),
        active_since REAL,
        fired_at REAL,
        cleared_since REAL,
        last_error TEXT,
        last_change REAL NOT NULL,
        PRIMARY KEY (invariant, entity_key)
    ) WITHOUT ROWID;
    """,
    # v2: the last recorded failure of each observation, so the log records each change once
    """
    CREATE TABLE observation_errors (
        observation TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        since REAL NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Ticket:
    """One firing episode of one (invariant, entity key).

    Attributes:
        status: `open` or `resolved` (see the module docstring for what comes later).
        held: a human put it on hold: the engine does not auto-resolve it.
        first_seen / last_seen: when it opened / the last tick its entity was seen firing.
        occurrences: ticks in which its entity was seen firing while the ticket was open.
        snapshot: the observations that fired it, plus the entity's `item`.
        previous_ticket_id: the ticket of the previous episode of the same key (flapping).
    """

    id: int
    invariant: str
    entity_key: str
    labels: dict[str, str]
    severity: str
    status: str
    held: bool
    first_seen: float
    last_seen: float
    resolved_at: float | None
    occurrences: int
    message: str
    snapshot: dict[str, Any]
    previous_ticket_id: int | None

    @property
    def is_open(self) -> bool:
        return self.status != RESOLVED


@dataclass(frozen=True)
class Event:
    """One line of the audit log; `ticket_id` is None for pending/cleared and observation events."""

    id: int
    ticket_id: int | None
    invariant: str | None
    entity_key: str | None
    kind: str
    actor: str
    at: float
    data: dict[str, Any]


@dataclass(frozen=True)
class TickChanges:
    """What one `apply_tick` changed.

    Attributes:
        opened: tickets opened by `firing` transitions.
        resolved: tickets resolved by `resolved` transitions.
        updated: ids of open tickets whose entity is still firing (last_seen, occurrences bumped).
        held: ids of held tickets whose entity resolved: they stay open until a human acts.
        events: how many events were appended.
    """

    opened: tuple[Ticket, ...] = ()
    resolved: tuple[Ticket, ...] = ()
    updated: tuple[int, ...] = ()
    held: tuple[int, ...] = ()
    events: int = 0


_TICKET_COLUMNS = (
    "id, invariant, entity_key, labels, severity, status, held, first_seen, last_seen, "
    "resolved_at, occurrences, message, snapshot, previous_ticket_id"
)
_EVENT_COLUMNS = "id, ticket_id, invariant, entity_key, kind, actor, at, data"


class Store:
    """The SQLite ticket store of one subject. Not shared between processes that both write
    ticks: one engine per file (readers such as `opctl tickets` are fine)."""

    def __init__(
        self, path: Path, *, clock: Callable[[], float] = time.time, busy_timeout: float = BUSY_TIMEOUT_S
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = self._connect(busy_timeout)
        try:
            self._migrate()
            # the non-ok states as last written, to write only what changed each tick
            self._saved: dict[tuple[str, str], EntityState] = self._read_states()
        except BaseException:
            self._conn.close()
            raise

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

    def __enter__(self) -> Store:
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

    # ------------------------------------------------------------------ invariant states

    def load_states(self) -> dict[tuple[str, str], EntityState]:
        """The pending and firing states as last saved (entities not listed are ok)."""
        self._saved = self._read_states()
        return dict(self._saved)

    def _read_states(self) -> dict[tuple[str, str], EntityState]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT invariant, entity_key, status, active_since, fired_at, cleared_since, last_error, "
                "last_change FROM entity_states"
            ).fetchall()
        return {(r[0], r[1]): EntityState(r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows}

    def _save_states(
        self, conn: sqlite3.Connection, states: Mapping[tuple[str, str], EntityState]
    ) -> dict[tuple[str, str], EntityState]:
        # ok entities are not stored: most entities are ok, and "absent" already means ok
        candidates = states.unsettled if isinstance(states, StateMap) else states
        wanted = {k: s for k, s in candidates.items() if s.status != "ok"}
        saved = self._saved
        changed = [
            (k[0], k[1], s.status, s.active_since, s.fired_at, s.cleared_since, s.last_error, s.last_change)
            for k, s in wanted.items()
            if saved.get(k) != s
        ]
        gone = [k for k in saved if k not in wanted]
        if changed:
            conn.executemany("INSERT OR REPLACE INTO entity_states VALUES (?, ?, ?, ?, ?, ?, ?, ?)", changed)
        if gone:
            conn.executemany("DELETE FROM entity_states WHERE invariant = ? AND entity_key = ?", gone)
        return wanted

    # ------------------------------------------------------------------ one tick

    def apply_tick(
        self,
        *,
        states: Mapping[tuple[str, str], EntityState],
        transitions: list[Transition],
        entities: Mapping[tuple[str, str], Entity],
        observations_snapshot: Mapping[str, Any],
        invariants: Mapping[str, Invariant],
        messages: Mapping[tuple[str, str], str],
        now: float,
        actor: str = "engine",
    ) -> TickChanges:
        """Write one tick in one transaction: states, tickets, and an event per transition.

        `firing` opens a ticket (linked to the previous ticket of the same key); `resolved`
        resolves the open ticket unless it is held; open tickets whose entity is still firing get
        last_seen/occurrences bumped. A manually resolved ticket stays resolved while its entity
        keeps firing; the next ticket opens on the next firing episode.
        """
        opened: list[Ticket] = []
        resolved: list[Ticket] = []
        held: list[int] = []
        events = 0
        with self._transaction() as conn:
            saved = self._save_states(conn, states)
            open_ids = {
                (r[1], r[2]): (r[0], bool(r[3]))
                for r in conn.execute(f"SELECT id, invariant, entity_key, held FROM tickets WHERE status != '{RESOLVED}'")
            }
            fired_now: set[tuple[str, str]] = set()
            for t in transitions:
                sk = (t.invariant, t.key)
                data: dict[str, Any] = {"before": t.before, "after": t.after}
                state = states.get(sk)
                if state is not None and state.last_error is not None:
                    data["error"] = state.last_error
                ticket_id: int | None = None
                if t.kind == "firing":
                    fired_now.add(sk)
                    if sk in open_ids:
                        # an open ticket outlived its episode (held while the entity recovered):
                        # the new episode continues it rather than opening a second one
                        ticket_id = open_ids[sk][0]
                        data["ticket"] = "continued"
                        conn.execute(
                            "UPDATE tickets SET last_seen = ?, occurrences = occurrences + 1 WHERE id = ?",
                            (now, ticket_id),
                        )
                    else:
                        entity = entities.get(sk)
                        ticket_id = self._open_ticket(
                            conn, t, invariants.get(t.invariant), entity.item if entity else None,
                            observations_snapshot, messages.get(sk), now,
                        )
                        open_ids[sk] = (ticket_id, False)
                        opened.append(self._ticket(conn, ticket_id))
                        data["ticket"] = "opened"
                elif t.kind == "resolved":
                    if sk in open_ids:
                        ticket_id, is_held = open_ids[sk]
                        if is_held:
                            data["ticket"] = "held"
                            held.append(ticket_id)
                        else:
                            conn.execute(
                                f"UPDATE tickets SET status = '{RESOLVED}', resolved_at = ?, last_seen = ? WHERE id = ?",
                                (now, now, ticket_id),
                            )
                            del open_ids[sk]
                            resolved.append(self._ticket(conn, ticket_id))
                            data["ticket"] = "resolved"
                    else:
                        ticket_id = self._last_ticket_id(conn, *sk)
                        data["ticket"] = "already resolved"
                self._insert_event(conn, t.kind, ticket_id, t.invariant, t.key, actor, t.at, data)
                events += 1
            still_firing = [
                (now, ticket_id)
                for sk, (ticket_id, _) in open_ids.items()
                if sk not in fired_now and (s := states.get(sk)) is not None and s.status == "firing"
            ]
            if still_firing:
                conn.executemany(
                    "UPDATE tickets SET last_seen = ?, occurrences = occurrences + 1 WHERE id = ?", still_firing
                )
        self._saved = saved
        return TickChanges(
            opened=tuple(opened),
            resolved=tuple(resolved),
            updated=tuple(ticket_id for _, ticket_id in still_firing),
            held=tuple(held),
            events=events,
        )

    def _open_ticket(
        self,
        conn: sqlite3.Connection,
        t: Transition,
        inv: Invariant | None,
        item: Any,
        observations_snapshot: Mapping[str, Any],
        message: str | None,
        now: float,
    ) -> int:
        snapshot = dict(observations_snapshot)
        if item is not None:
            snapshot["item"] = item  # `item` is reserved, so it cannot shadow an observation
        if message is None:
            where = f" for {t.key!r}" if t.key else ""
            message = f"invariant '{t.invariant}' is violated{where}"
        cursor = conn.execute(
            "INSERT INTO tickets (invariant, entity_key, labels, severity, status, held, first_seen, last_seen, "
            "occurrences, message, snapshot, previous_ticket_id) VALUES (?, ?, ?, ?, ?, 0, ?, ?, 1, ?, ?, ?)",
            (
                t.invariant,
                t.key,
                _dumps(dict(inv.labels) if inv else {}),
                inv.severity if inv else "warning",
                OPEN,
                now,
                now,
                message,
                _dumps(snapshot),
                self._last_ticket_id(conn, t.invariant, t.key),
            ),
        )
        return int(cursor.lastrowid)  # type: ignore[arg-type]

    @staticmethod
    def _last_ticket_id(conn: sqlite3.Connection, invariant: str, key: str) -> int | None:
        row = conn.execute(
            "SELECT MAX(id) FROM tickets WHERE invariant = ? AND entity_key = ?", (invariant, key)
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def record_observation_errors(self, errors: Mapping[str, str], now: float) -> None:
        """Call every tick with the failures of that tick (observation → reason).

        An event is appended when an observation starts failing or its reason changes, and an
        `observation_recovered` event when one that failed is no longer in `errors`.
        """
        with self._transaction() as conn:
            known = dict(conn.execute("SELECT observation, reason FROM observation_errors").fetchall())
            for name, reason in errors.items():
                if known.get(name) == reason:
                    continue
                conn.execute("INSERT OR REPLACE INTO observation_errors VALUES (?, ?, ?)", (name, reason, now))
                data = {"observation": name, "reason": reason}
                self._insert_event(conn, "observation_error", None, None, None, "engine", now, data)
            for name in known.keys() - errors.keys():
                conn.execute("DELETE FROM observation_errors WHERE observation = ?", (name,))
                data = {"observation": name, "reason": known[name]}
                self._insert_event(conn, "observation_recovered", None, None, None, "engine", now, data)

    # ------------------------------------------------------------------ tickets

    def ticket(self, ticket_id: int) -> Ticket | None:
        with self._reading() as conn:
            return self._ticket(conn, ticket_id)

    def tickets(self, status: str | None = None, limit: int = 100) -> list[Ticket]:
        """Newest first. `status="open"` means every status except resolved."""
        query = f"SELECT {_TICKET_COLUMNS} FROM tickets"
        args: tuple[Any, ...] = ()
        if status == OPEN:
            query += f" WHERE status != '{RESOLVED}'"
        elif status is not None:
            query += " WHERE status = ?"
            args = (status,)
        with self._reading() as conn:
            rows = conn.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_ticket_from_row(r) for r in rows]

    def open_ticket_for(self, invariant: str, key: str) -> Ticket | None:
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE invariant = ? AND entity_key = ? AND status != '{RESOLVED}'",
                (invariant, key),
            ).fetchone()
        return None if row is None else _ticket_from_row(row)

    @staticmethod
    def _ticket(conn: sqlite3.Connection, ticket_id: int) -> Ticket | None:
        row = conn.execute(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        return None if row is None else _ticket_from_row(row)

    def resolve(self, ticket_id: int, *, actor: str, reason: str) -> Ticket:
        """Resolve by hand (held or not). The entity's next firing episode opens a new ticket."""
        now = self._clock()
        with self._transaction() as conn:
            ticket = self._require(conn, ticket_id, "resolve")
            if not ticket.is_open:
                raise StoreError(f"ticket {ticket_id} is already resolved; nothing to do")
            conn.execute(
                f"UPDATE tickets SET status = '{RESOLVED}', resolved_at = ?, held = 0 WHERE id = ?", (now, ticket_id)
            )
            self._insert_event(
                conn, "manual_resolve", ticket_id, ticket.invariant, ticket.entity_key, actor, now, {"reason": reason}
            )
            return self._ticket(conn, ticket_id)  # type: ignore[return-value]

    def hold(self, ticket_id: int, *, actor: str, reason: str) -> Ticket:
        """Keep an open ticket open: the engine will not auto-resolve it until `unhold`."""
        return self._set_held(ticket_id, True, actor=actor, reason=reason)

    def unhold(self, ticket_id: int, *, actor: str, reason: str) -> Ticket:
        return self._set_held(ticket_id, False, actor=actor, reason=reason)

    def _set_held(self, ticket_id: int, held: bool, *, actor: str, reason: str) -> Ticket:
        verb = "hold" if held else "unhold"
        now = self._clock()
        with self._transaction() as conn:
            ticket = self._require(conn, ticket_id, verb)
            if not ticket.is_open:
                raise StoreError(f"cannot {verb} ticket {ticket_id}: it is resolved")
            if ticket.held == held:
                state = "already on hold" if held else "not on hold"
                raise StoreError(f"cannot {verb} ticket {ticket_id}: it is {state}")
            conn.execute("UPDATE tickets SET held = ? WHERE id = ?", (int(held), ticket_id))
            self._insert_event(conn, verb, ticket_id, ticket.invariant, ticket.entity_key, actor, now, {"reason": reason})
            return self._ticket(conn, ticket_id)  # type: ignore[return-value]

    def _require(self, conn: sqlite3.Connection, ticket_id: int, verb: str) -> Ticket:
        ticket = self._ticket(conn, ticket_id)
        if ticket is None:
            raise StoreError(f"cannot {verb} ticket {ticket_id}: there is no ticket with that id in {self.path}")
        return ticket

    # ------------------------------------------------------------------ events

    def events(self, ticket_id: int | None = None, limit: int = 1000) -> list[Event]:
        """Oldest first; all events, or those of one ticket."""
        with self._reading() as conn:
            if ticket_id is None:
                rows = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM (SELECT * FROM events ORDER BY id DESC LIMIT ?) ORDER BY id", (limit,)
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM (SELECT * FROM events WHERE ticket_id = ? ORDER BY id DESC LIMIT ?) "
                    "ORDER BY id",
                    (ticket_id, limit),
                ).fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows]

    def add_event(
        self,
        kind: str,
        *,
        ticket_id: int | None,
        actor: str,
        data: Mapping[str, Any],
        at: float,
        invariant: str | None = None,
        entity_key: str | None = None,
    ) -> int:
        """Append one event (the only way events are written; they are never changed).
        For a ticket's event, invariant and entity key are taken from the ticket."""
        with self._transaction() as conn:
            if ticket_id is not None:
                ticket = self._require(conn, ticket_id, f"add a {kind!r} event to")
                invariant, entity_key = ticket.invariant, ticket.entity_key
            return self._insert_event(conn, kind, ticket_id, invariant, entity_key, actor, at, data)

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


def _statements(script: str) -> list[str]:
    """Split a migration into statements (triggers contain `;` inside BEGIN ... END)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _ticket_from_row(r: tuple[Any, ...]) -> Ticket:
    return Ticket(
        id=r[0],
        invariant=r[1],
        entity_key=r[2],
        labels=json.loads(r[3]),
        severity=r[4],
        status=r[5],
        held=bool(r[6]),
        first_seen=r[7],
        last_seen=r[8],
        resolved_at=r[9],
        occurrences=r[10],
        message=r[11],
        snapshot=json.loads(r[12]),
        previous_ticket_id=r[13],
    )


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the ticket store {path} is locked by another writer ({text}); is another `opctl run` using it?"
        )
    return StoreError(f"the ticket store {path} failed: {text}")

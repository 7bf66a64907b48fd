"""The durable record: tickets, the append-only event log and invariant states, in SQLite.

One file per subject, created 0600 (it holds observed values), in WAL mode so `opctl tickets`
can read while the engine writes. Each tick is written in one transaction (states, tickets,
events), so a crash leaves the previous tick or the new one, never half of it; pending and
firing states are restored on start, so a restart neither re-opens nor loses tickets.

Ticket statuses (a string column; every status but `resolved` counts as open, and at most one
open ticket exists per (invariant, entity key), a partial unique index):
`open` (firing), `verifying` (an action ran; waiting for the invariant to hold), `escalated`
(verification window passed, attempts exhausted, every proposal refused, a proposal rejected or
expired: a human must look), `resolved`.
Events are append-only: `add_event` is the only writer and triggers refuse UPDATE and DELETE.

Acting (schema v3) keeps, beside tickets: proposals (one per recommended action, with the gate's
decision), executions (written BEFORE a request runs and updated after, so a crash never replays
one: executions left `executing` become `unknown` on the next start), cached diagnoses and
token spend (the DiagnosisCache / TokenLedger of engine.diagnose, see engine.act.records), and
switches (the kill switch and the mode override), which a running loop reads every tick, so
`opctl kill` from another process takes effect within one tick. Each of these changes writes its
audit event in the same transaction.
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.config.models import Invariant
from engine.errors import StoreError
from engine.evaluate import Entity, EntityState, StateMap, Transition

RESOLVED = "resolved"
OPEN = "open"
VERIFYING = "verifying"
ESCALATED = "escalated"
TICKET_STATUSES = (OPEN, VERIFYING, ESCALATED, RESOLVED)  # only `resolved` is closed

PROPOSAL_STATUSES = (
    "proposed",  # observe mode: recorded only
    "refused",  # a gate said no (`gate`, `detail`)
    "awaiting_approval",
    "approved",
    "rejected",
    "expired",
    "cancelled",  # the kill switch
    "executing",
    "succeeded",
    "failed",
)
LIVE_PROPOSALS = ("awaiting_approval", "approved", "executing")
EXECUTION_STATUSES = ("executing", "succeeded", "failed", "unknown")
KILL_SWITCH = "kill"
MODE_SWITCH = "mode"
# why a ticket is parked (not attempted again until something changes)
PARKED_KILLED = "kill_switch"  # until `opctl resume`
PARKED_OBSERVE = "observe"  # proposals recorded in observe mode; until the mode changes
PARKED_NO_ACTION = "no_action"  # the diagnosis recommends nothing: a human reads it
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
    # v3: acting: diagnoses, token spend, proposals, executions, switches; ticket act state
    """
    ALTER TABLE tickets ADD COLUMN next_attempt_at REAL;
    ALTER TABLE tickets ADD COLUMN parked TEXT;
    ALTER TABLE tickets ADD COLUMN verify_deadline REAL;
    ALTER TABLE tickets ADD COLUMN verify_proposal_id INTEGER;
    CREATE TABLE diagnoses (
        fingerprint TEXT PRIMARY KEY,
        at REAL NOT NULL,
        diagnosis TEXT NOT NULL
    );
    CREATE TABLE token_spend (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id INTEGER,
        provider TEXT NOT NULL,
        model TEXT,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX token_spend_by_time ON token_spend(at);
    CREATE TABLE proposals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id INTEGER NOT NULL REFERENCES tickets(id),
        action TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        reason TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('proposed', 'refused', 'awaiting_approval', 'approved',
            'rejected', 'expired', 'cancelled', 'executing', 'succeeded', 'failed')),
        gate TEXT,
        detail TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL,
        decided_by TEXT
    );
    CREATE INDEX proposals_by_ticket ON proposals(ticket_id, id);
    CREATE INDEX proposals_by_status ON proposals(status);
    CREATE TABLE executions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        proposal_id INTEGER NOT NULL REFERENCES proposals(id),
        ticket_id INTEGER NOT NULL REFERENCES tickets(id),
        action TEXT NOT NULL,
        entity_key TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('executing', 'succeeded', 'failed', 'unknown')),
        request TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        duration_s REAL,
        response TEXT,
        error TEXT
    );
    CREATE INDEX executions_by_action ON executions(action, entity_key, started_at);
    CREATE INDEX executions_by_time ON executions(started_at);
    CREATE TABLE switches (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        actor TEXT NOT NULL,
        at REAL NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Ticket:
    """One firing episode of one (invariant, entity key).

    Attributes:
        status: `open`, `verifying`, `escalated` or `resolved` (see the module docstring).
        held: a human put it on hold: the engine does not auto-resolve it.
        first_seen / last_seen: when it opened / the last tick its entity was seen firing.
        occurrences: ticks in which its entity was seen firing while the ticket was open.
        snapshot: the observations that fired it, plus the entity's `item`.
        previous_ticket_id: the ticket of the previous episode of the same key (flapping).
        next_attempt_at: the engine may diagnose and propose again from then (None: now).
        parked: why the engine does not attempt it again until something changes (None: it may).
        verify_deadline / verify_proposal_id: while `verifying`, until when, and which proposal ran.
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
    next_attempt_at: float | None = None
    parked: str | None = None
    verify_deadline: float | None = None
    verify_proposal_id: int | None = None

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


@dataclass(frozen=True)
class Proposal:
    """One recommended action for one ticket and what became of it.

    Attributes:
        source: who recommended it (`claude`, `runbook`, `replay`).
        status: one of PROPOSAL_STATUSES.
        gate / detail: for `refused`, which gate and why; otherwise the last decision's note.
        expires_at: for `awaiting_approval`, when it expires.
        decided_by: who approved, rejected or cancelled it.
    """

    id: int
    ticket_id: int
    action: str
    params: dict[str, Any]
    reason: str
    source: str
    status: str
    gate: str | None
    detail: str | None
    created_at: float
    updated_at: float
    expires_at: float | None
    decided_by: str | None


@dataclass(frozen=True)
class Execution:
    """One run of an action: written `executing` before the request, updated after it."""

    id: int
    proposal_id: int
    ticket_id: int
    action: str
    entity_key: str
    status: str
    request: dict[str, Any]
    started_at: float
    finished_at: float | None
    duration_s: float | None
    response: str | None
    error: str | None


@dataclass(frozen=True)
class TicketAct:
    """A change of a ticket's acting state, written with the event that explains it.

    Fields left at `...` (Ellipsis) are not changed; None clears a column.
    """

    status: str | None = None
    next_attempt_at: float | None | object = ...
    parked: str | None | object = ...
    verify_deadline: float | None | object = ...
    verify_proposal_id: int | None | object = ...


_TICKET_COLUMNS = (
    "id, invariant, entity_key, labels, severity, status, held, first_seen, last_seen, "
    "resolved_at, occurrences, message, snapshot, previous_ticket_id, next_attempt_at, parked, "
    "verify_deadline, verify_proposal_id"
)
_EVENT_COLUMNS = "id, ticket_id, invariant, entity_key, kind, actor, at, data"
_PROPOSAL_COLUMNS = (
    "id, ticket_id, action, params, reason, source, status, gate, detail, created_at, updated_at, expires_at, decided_by"
)
_EXECUTION_COLUMNS = (
    "id, proposal_id, ticket_id, action, entity_key, status, request, started_at, finished_at, duration_s, response, error"
)
_LIVE = "('awaiting_approval', 'approved', 'executing')"


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
            open_rows = conn.execute(
                f"SELECT id, invariant, entity_key, held, status, verify_proposal_id FROM tickets WHERE status != '{RESOLVED}'"
            ).fetchall()
            open_ids = {(r[1], r[2]): (r[0], bool(r[3])) for r in open_rows}
            verifying = {r[0]: r[5] for r in open_rows if r[4] == VERIFYING}
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
                            if ticket_id in verifying:
                                self._credit(conn, ticket_id, verifying[ticket_id], t, actor)
                                events += 1
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

    # ------------------------------------------------------------------ acting: verification credit

    def _credit(self, conn: sqlite3.Connection, ticket_id: int, proposal_id: int | None, t: Transition, actor: str) -> None:
        """The invariant holds again while the ticket was verifying: credit the action that ran."""
        proposal = None if proposal_id is None else self._proposal(conn, proposal_id)
        data: dict[str, Any] = {"proposal": proposal_id}
        if proposal is not None:
            data.update(action=proposal.action, params=proposal.params)
        conn.execute(
            "UPDATE tickets SET verify_deadline = NULL, next_attempt_at = NULL, parked = NULL WHERE id = ?", (ticket_id,)
        )
        self._insert_event(conn, "verified", ticket_id, t.invariant, t.key, actor, t.at, data)

    # ------------------------------------------------------------------ acting: ticket state

    def due_tickets(self, now: float) -> list[Ticket]:
        """Open tickets the engine may diagnose and propose for now: status `open`, not held, not
        parked, past `next_attempt_at`, and without a live proposal. Oldest first."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_TICKET_COLUMNS} FROM tickets t WHERE status = '{OPEN}' AND held = 0 AND parked IS NULL "
                "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
                f"AND NOT EXISTS (SELECT 1 FROM proposals p WHERE p.ticket_id = t.id AND p.status IN {_LIVE}) ORDER BY id",
                (now,),
            ).fetchall()
        return [_ticket_from_row(r) for r in rows]

    def similar_tickets(self, invariant: str, *, exclude: int, limit: int = 5) -> list[Ticket]:
        """Earlier tickets of the same invariant, newest first."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE invariant = ? AND id != ? ORDER BY id DESC LIMIT ?",
                (invariant, exclude, limit),
            ).fetchall()
        return [_ticket_from_row(r) for r in rows]

    def update_ticket_act(
        self, ticket_id: int, change: TicketAct, *, kind: str, data: Mapping[str, Any], actor: str, at: float
    ) -> Ticket:
        """Change a ticket's acting state and append the event saying why, in one transaction.
        A resolved ticket is left as it is (the event is still written)."""
        with self._transaction() as conn:
            ticket = self._require(conn, ticket_id, "update")
            self._set_ticket_act(conn, ticket, change)
            self._insert_event(conn, kind, ticket_id, ticket.invariant, ticket.entity_key, actor, at, data)
            return self._ticket(conn, ticket_id)  # type: ignore[return-value]

    @staticmethod
    def _set_ticket_act(conn: sqlite3.Connection, ticket: Ticket, change: TicketAct) -> None:
        if not ticket.is_open:
            return
        sets: list[str] = []
        args: list[Any] = []
        if change.status is not None:
            if change.status not in TICKET_STATUSES or change.status == RESOLVED:
                raise StoreError(f"the engine cannot set ticket {ticket.id} to status {change.status!r}")
            sets.append("status = ?")
            args.append(change.status)
        for column in ("next_attempt_at", "parked", "verify_deadline", "verify_proposal_id"):
            value = getattr(change, column)
            if value is not ...:
                sets.append(f"{column} = ?")
                args.append(value)
        if sets:
            conn.execute(f"UPDATE tickets SET {', '.join(sets)} WHERE id = ?", (*args, ticket.id))

    def verifying_tickets(self) -> list[Ticket]:
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE status = '{VERIFYING}' ORDER BY id").fetchall()
        return [_ticket_from_row(r) for r in rows]

    # ------------------------------------------------------------------ acting: proposals

    def add_proposal(
        self,
        ticket_id: int,
        *,
        action: str,
        params: Mapping[str, Any],
        reason: str,
        source: str,
        status: str,
        at: float,
        gate: str | None = None,
        detail: str | None = None,
        expires_at: float | None = None,
        actor: str = "engine",
    ) -> Proposal:
        """Record a proposal with the gate's decision, and its event (kind = the status)."""
        if status not in PROPOSAL_STATUSES:
            raise StoreError(f"unknown proposal status {status!r}")
        with self._transaction() as conn:
            ticket = self._require(conn, ticket_id, "propose an action for")
            cursor = conn.execute(
                "INSERT INTO proposals (ticket_id, action, params, reason, source, status, gate, detail, created_at, "
                "updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ticket_id, action, _dumps(dict(params)), reason, source, status, gate, detail, at, at, expires_at),
            )
            proposal_id = int(cursor.lastrowid)  # type: ignore[arg-type]
            data: dict[str, Any] = {"proposal": proposal_id, "action": action, "params": dict(params), "source": source}
            if reason:
                data["reason"] = reason
            if gate is not None:
                data["gate"] = gate
            if detail is not None:
                data["detail"] = detail
            if expires_at is not None:
                data["expires_at"] = expires_at
            self._insert_event(conn, status, ticket_id, ticket.invariant, ticket.entity_key, actor, at, data)
            return self._proposal(conn, proposal_id)  # type: ignore[return-value]

    def set_proposal_status(
        self,
        proposal_id: int,
        status: str,
        *,
        actor: str,
        at: float,
        gate: str | None = None,
        detail: str | None = None,
        expect: tuple[str, ...] | None = None,
        ticket: TicketAct | None = None,
    ) -> Proposal:
        """Move a proposal to `status` (only from `expect` when given), with its event; optionally
        change its ticket's acting state in the same transaction."""
        with self._transaction() as conn:
            return self._move_proposal(conn, proposal_id, status, actor=actor, at=at, gate=gate, detail=detail, expect=expect, ticket=ticket)

    def _move_proposal(
        self,
        conn: sqlite3.Connection,
        proposal_id: int,
        status: str,
        *,
        actor: str,
        at: float,
        gate: str | None = None,
        detail: str | None = None,
        expect: tuple[str, ...] | None = None,
        ticket: TicketAct | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Proposal:
        if status not in PROPOSAL_STATUSES:
            raise StoreError(f"unknown proposal status {status!r}")
        proposal = self._proposal(conn, proposal_id)
        if proposal is None:
            raise StoreError(f"there is no proposal #{proposal_id} in {self.path}")
        if expect is not None and proposal.status not in expect:
            wanted = " or ".join(expect)
            raise StoreError(f"proposal #{proposal_id} is {proposal.status}, not {wanted}")
        decided = actor if status in ("approved", "rejected", "cancelled", "expired") else proposal.decided_by
        conn.execute(
            "UPDATE proposals SET status = ?, gate = ?, detail = ?, updated_at = ?, decided_by = ? WHERE id = ?",
            (status, gate if gate is not None else proposal.gate, detail if detail is not None else proposal.detail, at, decided, proposal_id),
        )
        row = self._ticket(conn, proposal.ticket_id)
        assert row is not None  # a foreign key
        if ticket is not None:
            self._set_ticket_act(conn, row, ticket)
        event: dict[str, Any] = {"proposal": proposal_id, "action": proposal.action, **(data or {})}
        if gate is not None:
            event["gate"] = gate
        if detail is not None:
            event["detail"] = detail
        self._insert_event(conn, status, proposal.ticket_id, row.invariant, row.entity_key, actor, at, event)
        return self._proposal(conn, proposal_id)  # type: ignore[return-value]

    def approve(self, proposal_id: int, *, actor: str, reason: str = "") -> Proposal:
        """A human approves a proposal waiting for approval; the engine runs it on its next tick,
        after running the gates again. Refused while the kill switch is on or once expired."""
        now = self._clock()
        with self._transaction() as conn:
            proposal = self._proposal(conn, proposal_id)
            if proposal is None:
                raise StoreError(f"there is no proposal #{proposal_id} in {self.path}")
            if proposal.status != "awaiting_approval":
                raise StoreError(f"cannot approve proposal #{proposal_id}: it is {proposal.status}, not awaiting approval")
            if self._switch(conn, KILL_SWITCH) is not None:
                raise StoreError(f"cannot approve proposal #{proposal_id}: the kill switch is on (run `opctl resume` first)")
            if proposal.expires_at is not None and proposal.expires_at <= now:
                raise StoreError(f"cannot approve proposal #{proposal_id}: it expired at {_iso(proposal.expires_at)}")
            return self._move_proposal(conn, proposal_id, "approved", actor=actor, at=now, data={"reason": reason} if reason else None)

    def reject(self, proposal_id: int, *, actor: str, reason: str = "") -> Proposal:
        """A human rejects a proposal: it never runs, and its ticket is escalated to humans."""
        now = self._clock()
        with self._transaction() as conn:
            proposal = self._proposal(conn, proposal_id)
            if proposal is None:
                raise StoreError(f"there is no proposal #{proposal_id} in {self.path}")
            if proposal.status not in ("awaiting_approval", "approved"):
                raise StoreError(f"cannot reject proposal #{proposal_id}: it is {proposal.status}")
            return self._move_proposal(
                conn, proposal_id, "rejected", actor=actor, at=now,
                data={"reason": reason} if reason else None, ticket=TicketAct(status=ESCALATED),
            )

    def expire_proposals(self, now: float, *, actor: str = "engine") -> list[Proposal]:
        """Proposals whose approval window passed become `expired`; their tickets are escalated."""
        with self._transaction() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM proposals WHERE status = 'awaiting_approval' AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY id",
                (now,),
            )]
            return [
                self._move_proposal(conn, pid, "expired", actor=actor, at=now, detail="nobody approved it in time",
                                    ticket=TicketAct(status=ESCALATED))
                for pid in ids
            ]

    def proposal(self, proposal_id: int) -> Proposal | None:
        with self._reading() as conn:
            return self._proposal(conn, proposal_id)

    def proposals(self, *, status: str | None = None, ticket_id: int | None = None, limit: int = 100) -> list[Proposal]:
        """Newest first; `status="pending"` means awaiting approval or approved."""
        clauses: list[str] = []
        args: list[Any] = []
        if status == "pending":
            clauses.append("status IN ('awaiting_approval', 'approved')")
        elif status is not None:
            clauses.append("status = ?")
            args.append(status)
        if ticket_id is not None:
            clauses.append("ticket_id = ?")
            args.append(ticket_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {_PROPOSAL_COLUMNS} FROM proposals{where} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_proposal_from_row(r) for r in rows]

    @staticmethod
    def _proposal(conn: sqlite3.Connection, proposal_id: int) -> Proposal | None:
        row = conn.execute(f"SELECT {_PROPOSAL_COLUMNS} FROM proposals WHERE id = ?", (proposal_id,)).fetchone()
        return None if row is None else _proposal_from_row(row)

    def live_proposals(self, ticket_id: int) -> list[Proposal]:
        """Proposals of the ticket that may still run: awaiting approval, approved or executing."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_PROPOSAL_COLUMNS} FROM proposals WHERE ticket_id = ? AND status IN {_LIVE} ORDER BY id", (ticket_id,)
            ).fetchall()
        return [_proposal_from_row(r) for r in rows]

    # ------------------------------------------------------------------ acting: executions

    def begin_execution(self, proposal_id: int, *, request: Mapping[str, Any], at: float, actor: str = "engine") -> Execution:
        """Record that a proposal is about to run (BEFORE the request): a crash after this never
        replays it, because `interrupted_executions` marks it `unknown` on the next start."""
        with self._transaction() as conn:
            proposal = self._proposal(conn, proposal_id)
            if proposal is None:
                raise StoreError(f"there is no proposal #{proposal_id} in {self.path}")
            ticket = self._ticket(conn, proposal.ticket_id)
            assert ticket is not None
            cursor = conn.execute(
                "INSERT INTO executions (proposal_id, ticket_id, action, entity_key, status, request, started_at) "
                "VALUES (?, ?, ?, ?, 'executing', ?, ?)",
                (proposal_id, ticket.id, proposal.action, ticket.entity_key, _dumps(dict(request)), at),
            )
            execution_id = int(cursor.lastrowid)  # type: ignore[arg-type]
            self._move_proposal(conn, proposal_id, "executing", actor=actor, at=at, data={"execution": execution_id, "request": dict(request)})
            return self._execution(conn, execution_id)  # type: ignore[return-value]

    def finish_execution(
        self,
        execution_id: int,
        *,
        ok: bool,
        duration_s: float,
        response: str,
        error: str | None,
        at: float,
        ticket: TicketAct | None = None,
        ticket_event: tuple[str, Mapping[str, Any]] | None = None,
        details: Mapping[str, Any] | None = None,
        actor: str = "engine",
    ) -> Execution:
        """Record how an execution ended; its proposal becomes succeeded/failed (event with the
        status, duration and response excerpt) and the ticket's acting state changes with it."""
        with self._transaction() as conn:
            execution = self._execution(conn, execution_id)
            if execution is None:
                raise StoreError(f"there is no execution #{execution_id} in {self.path}")
            if execution.status != "executing":
                raise StoreError(f"execution #{execution_id} already finished ({execution.status})")
            status = "succeeded" if ok else "failed"
            conn.execute(
                "UPDATE executions SET status = ?, finished_at = ?, duration_s = ?, response = ?, error = ? WHERE id = ?",
                (status, at, duration_s, response, error, execution_id),
            )
            data: dict[str, Any] = {
                "execution": execution_id,
                "request": execution.request.get("line"),
                "duration_s": round(duration_s, 4),
                "response": response,
                **(details or {}),
            }
            if error is not None:
                data["error"] = error
            proposal = self._move_proposal(conn, execution.proposal_id, status, actor=actor, at=at, ticket=ticket, data=data)
            if ticket_event is not None:
                row = self._ticket(conn, proposal.ticket_id)
                assert row is not None
                kind, event = ticket_event
                self._insert_event(conn, kind, row.id, row.invariant, row.entity_key, actor, at, event)
            return self._execution(conn, execution_id)  # type: ignore[return-value]

    def interrupted_executions(self, now: float, *, actor: str = "engine") -> list[Execution]:
        """On start: executions a crash left `executing` become `unknown`; their proposals fail and
        are never re-run, and their tickets are escalated (nobody knows what happened)."""
        with self._transaction() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM executions WHERE status = 'executing' ORDER BY id")]
            out = []
            for execution_id in ids:
                conn.execute(
                    "UPDATE executions SET status = 'unknown', finished_at = ?, error = ? WHERE id = ?",
                    (now, "the engine stopped while this ran; its outcome is unknown", execution_id),
                )
                execution = self._execution(conn, execution_id)
                assert execution is not None
                self._move_proposal(
                    conn, execution.proposal_id, "failed", actor=actor, at=now,
                    detail="interrupted: the engine stopped while it ran; outcome unknown, not re-run",
                    data={"execution": execution_id}, ticket=TicketAct(status=ESCALATED),
                )
                out.append(execution)
            return out

    def executions(self, *, ticket_id: int | None = None, limit: int = 100) -> list[Execution]:
        """Newest first."""
        where, args = ("WHERE ticket_id = ?", (ticket_id,)) if ticket_id is not None else ("", ())
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {_EXECUTION_COLUMNS} FROM executions {where} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_execution_from_row(r) for r in rows]

    @staticmethod
    def _execution(conn: sqlite3.Connection, execution_id: int) -> Execution | None:
        row = conn.execute(f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = ?", (execution_id,)).fetchone()
        return None if row is None else _execution_from_row(row)

    def last_execution_at(self, action: str, entity_key: str) -> float | None:
        """When `action` last started for this entity (any outcome): the cooldown's reference."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT MAX(started_at) FROM executions WHERE action = ? AND entity_key = ?", (action, entity_key)
            ).fetchone()
        return row[0]

    def execution_times_since(self, since: float, action: str | None = None) -> list[float]:
        """Start times of executions since `since` (of one action, or all), oldest first."""
        query = "SELECT started_at FROM executions WHERE started_at > ?"
        args: tuple[Any, ...] = (since,)
        if action is not None:
            query += " AND action = ?"
            args += (action,)
        with self._reading() as conn:
            return [r[0] for r in conn.execute(query + " ORDER BY started_at", args)]

    def attempts(self, ticket_id: int, action: str) -> int:
        """How many times `action` ran (or started) for this ticket."""
        with self._reading() as conn:
            return int(conn.execute(
                "SELECT COUNT(*) FROM executions WHERE ticket_id = ? AND action = ?", (ticket_id, action)
            ).fetchone()[0])

    # ------------------------------------------------------------------ acting: switches

    def killed(self) -> dict[str, Any] | None:
        """The kill switch: None when off, else who turned it on, when and why."""
        with self._reading() as conn:
            return self._switch(conn, KILL_SWITCH)

    def mode_override(self) -> str | None:
        """The mode set by `opctl mode`, overriding the config's (None: the config's)."""
        with self._reading() as conn:
            found = self._switch(conn, MODE_SWITCH)
        return None if found is None else str(found["value"])

    @staticmethod
    def _switch(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
        row = conn.execute("SELECT value, actor, at FROM switches WHERE name = ?", (name,)).fetchone()
        return None if row is None else {"value": row[0], "actor": row[1], "at": row[2]}

    def kill(self, *, actor: str, reason: str = "") -> list[Proposal]:
        """Turn the kill switch on and cancel every proposal waiting for approval or approved.
        Returns the cancelled proposals. Turning it on twice is allowed (the reason is updated)."""
        now = self._clock()
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO switches (name, value, actor, at) VALUES (?, ?, ?, ?)", (KILL_SWITCH, reason or "on", actor, now)
            )
            self._insert_event(conn, "kill_switch", None, None, None, actor, now, {"on": True, "reason": reason})
            ids = [r[0] for r in conn.execute("SELECT id FROM proposals WHERE status IN ('awaiting_approval', 'approved') ORDER BY id")]
            return [
                self._move_proposal(conn, pid, "cancelled", actor=actor, at=now, detail="the kill switch was turned on",
                                    ticket=TicketAct(parked=PARKED_KILLED))
                for pid in ids
            ]

    def resume(self, *, actor: str, reason: str = "") -> int:
        """Turn the kill switch off; tickets parked by it become due again. Returns how many."""
        now = self._clock()
        with self._transaction() as conn:
            if self._switch(conn, KILL_SWITCH) is None:
                raise StoreError("the kill switch is not on; nothing to resume")
            conn.execute("DELETE FROM switches WHERE name = ?", (KILL_SWITCH,))
            count = conn.execute(
                f"UPDATE tickets SET parked = NULL, next_attempt_at = NULL WHERE parked = ? AND status = '{OPEN}'", (PARKED_KILLED,)
            ).rowcount
            self._insert_event(conn, "kill_switch", None, None, None, actor, now, {"on": False, "reason": reason, "tickets_resumed": count})
            return int(count)

    def set_mode(self, mode: str, *, actor: str) -> None:
        """Override the config's mode (persisted). Leaving observe makes tickets parked in observe
        mode due again, so their proposals are gated and acted on under the new mode."""
        if mode not in ("observe", "approve", "execute"):
            raise StoreError(f"unknown mode {mode!r}; use observe, approve or execute")
        now = self._clock()
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO switches (name, value, actor, at) VALUES (?, ?, ?, ?)", (MODE_SWITCH, mode, actor, now))
            count = 0
            if mode != "observe":
                count = conn.execute(
                    f"UPDATE tickets SET parked = NULL, next_attempt_at = NULL WHERE parked = ? AND status = '{OPEN}'", (PARKED_OBSERVE,)
                ).rowcount
            self._insert_event(conn, "mode", None, None, None, actor, now, {"mode": mode, "tickets_resumed": count})

    # ------------------------------------------------------------------ diagnoses and token spend

    def cached_diagnosis(self, fingerprint: str) -> str | None:
        """The JSON of the diagnosis cached under `fingerprint` (see engine.act.records)."""
        with self._reading() as conn:
            row = conn.execute("SELECT diagnosis FROM diagnoses WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return None if row is None else str(row[0])

    def cache_diagnosis(self, fingerprint: str, diagnosis_json: str, at: float) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO diagnoses (fingerprint, at, diagnosis) VALUES (?, ?, ?)", (fingerprint, at, diagnosis_json))

    def tokens_spent_since(self, since: float) -> int:
        with self._reading() as conn:
            row = conn.execute("SELECT COALESCE(SUM(input_tokens + output_tokens), 0) FROM token_spend WHERE at >= ?", (since,)).fetchone()
        return int(row[0])

    def record_tokens(
        self, ticket_id: int | None, provider: str, model: str | None, input_tokens: int, output_tokens: int, at: float
    ) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO token_spend (ticket_id, provider, model, input_tokens, output_tokens, at) VALUES (?, ?, ?, ?, ?, ?)",
                (ticket_id, provider, model, input_tokens, output_tokens, at),
            )

    def tokens_by_ticket(self, ticket_id: int) -> tuple[int, int]:
        """(input, output) tokens spent on one ticket."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0) FROM token_spend WHERE ticket_id = ?", (ticket_id,)
            ).fetchone()
        return int(row[0]), int(row[1])


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
        next_attempt_at=r[14],
        parked=r[15],
        verify_deadline=r[16],
        verify_proposal_id=r[17],
    )


def _proposal_from_row(r: tuple[Any, ...]) -> Proposal:
    return Proposal(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12])


def _execution_from_row(r: tuple[Any, ...]) -> Execution:
    return Execution(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8], r[9], r[10], r[11])


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the ticket store {path} is locked by another writer ({text}); is another `opctl run` using it?"
        )
    return StoreError(f"the ticket store {path} failed: {text}")

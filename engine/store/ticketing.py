"""The Store's ticketing: invariant states, the tick transaction, tickets (with manual resolve
and hold), the append-only event log, and crediting the action that ran when a verifying
ticket resolves (only when its effect was confirmed).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from engine.config.models import Invariant
from engine.errors import StoreError
from engine.evaluate import Entity, EntityState, StateMap, Transition
from engine.store.base import Conn, StoreBase
from engine.store.dialect import Dialect
from engine.store.records import (
    _EVENT_COLUMNS, _TICKET_COLUMNS, Event, TickChanges, Ticket, _dumps, _event_from_row, _ticket_from_row,
)
from engine.store.statuses import OPEN, RESOLVED, VERIFYING

_STATE_COLUMNS = ("invariant", "entity_key", "status", "active_since", "fired_at", "cleared_since", "last_error", "last_change")
_STATE_UPSERT = Dialect.upsert("entity_states", _STATE_COLUMNS, ("invariant", "entity_key"))
_ERROR_UPSERT = Dialect.upsert("observation_errors", ("observation", "reason", "since"), ("observation",))


class TicketingStore(StoreBase):
    """Invariant states, ticks, tickets and events of a Store."""

    _saved: dict[tuple[str, str], EntityState]

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
        self, conn: Conn, states: Mapping[tuple[str, str], EntityState]
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
            conn.executemany(_STATE_UPSERT, changed)
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
        entity_invariants: Mapping[tuple[str, str], Invariant] | None = None,
    ) -> TickChanges:
        """Write one tick in one transaction: states, tickets, and an event per transition.

        `firing` opens a ticket (linked to the previous ticket of the same key); `resolved`
        resolves the open ticket unless it is held; open tickets whose entity is still firing get
        last_seen/occurrences bumped. A manually resolved ticket stays resolved while its entity
        keeps firing; the next ticket opens on the next firing episode. `entity_invariants`:
        an invariant of one entity that differs from its name's (target_up's severity per target).
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
            resolution_work = self._resolution_work(conn)
            # the transitions' events, written in batches; flushed before anything else writes
            # an event, so the log's order is the order things happened in
            batch: list[tuple[Any, ...]] = []
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
                        ticket = self._open_ticket(
                            conn, t, (entity_invariants or {}).get(sk) or invariants.get(t.invariant),
                            entity.item if entity else None,
                            observations_snapshot, messages.get(sk), now,
                        )
                        ticket_id = ticket.id
                        open_ids[sk] = (ticket_id, False)
                        opened.append(ticket)
                        data["ticket"] = "opened"
                elif t.kind == "resolved":
                    if sk in open_ids:
                        ticket_id, is_held = open_ids[sk]
                        if is_held:
                            data["ticket"] = "held"
                            held.append(ticket_id)
                        else:
                            row = conn.execute(
                                f"UPDATE tickets SET status = '{RESOLVED}', resolved_at = ?, last_seen = ? WHERE id = ? "
                                f"RETURNING {_TICKET_COLUMNS}",
                                (now, now, ticket_id),
                            ).fetchone()
                            del open_ids[sk]
                            resolved.append(_ticket_from_row(row))
                            data["ticket"] = "resolved"
                            if ticket_id in verifying:
                                self._insert_events(conn, batch)
                                self._credit(conn, ticket_id, verifying[ticket_id], t, actor)
                                events += 1
                            if ticket_id in resolution_work:
                                self._insert_events(conn, batch)
                                self._ticket_resolved(conn, ticket_id, actor=actor, at=t.at)
                    else:
                        ticket_id = self._last_ticket_id(conn, *sk)
                        data["ticket"] = "already resolved"
                batch.append((ticket_id, t.invariant, t.key, t.kind, actor, t.at, _dumps(data)))
                events += 1
            self._insert_events(conn, batch)
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
        conn: Conn,
        t: Transition,
        inv: Invariant | None,
        item: Any,
        observations_snapshot: Mapping[str, Any],
        message: str | None,
        now: float,
    ) -> Ticket:
        """One statement (a round trip on PostgreSQL): the row, linked to the key's last ticket."""
        snapshot = dict(observations_snapshot)
        if item is not None:
            snapshot["item"] = item  # `item` is reserved, so it cannot shadow an observation
        if message is None:
            where = f" for {t.key!r}" if t.key else ""
            message = f"invariant '{t.invariant}' is violated{where}"
        return _ticket_from_row(conn.execute(
            "INSERT INTO tickets (invariant, entity_key, labels, severity, status, held, first_seen, last_seen, "
            "occurrences, message, snapshot, previous_ticket_id) VALUES (?, ?, ?, ?, ?, 0, ?, ?, 1, ?, ?, "
            f"(SELECT MAX(id) FROM tickets WHERE invariant = ? AND entity_key = ?)) RETURNING {_TICKET_COLUMNS}",
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
                t.invariant,
                t.key,
            ),
        ).fetchone())

    @staticmethod
    def _last_ticket_id(conn: Conn, invariant: str, key: str) -> int | None:
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
                conn.execute(_ERROR_UPSERT, (name, reason, now))
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

    def open_ticket_count(self) -> int:
        """How many tickets are not resolved (cheap: the loop reports it every tick)."""
        with self._reading() as conn:
            row = conn.execute(f"SELECT COUNT(*) FROM tickets WHERE status != '{RESOLVED}'").fetchone()
        return int(row[0])

    def entity_state(self, invariant: str, key: str) -> str | None:
        """The stored state (pending, firing) of one entity; None: ok."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT status FROM entity_states WHERE invariant = ? AND entity_key = ?", (invariant, key)
            ).fetchone()
        return None if row is None else str(row[0])

    def open_ticket_for(self, invariant: str, key: str) -> Ticket | None:
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE invariant = ? AND entity_key = ? AND status != '{RESOLVED}'",
                (invariant, key),
            ).fetchone()
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
            self._ticket_resolved(conn, ticket_id, actor=actor, at=now)
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

    # ------------------------------------------------------------------ events

    def events(
        self, ticket_id: int | None = None, limit: int = 1000, *, kinds: Collection[str] | None = None
    ) -> list[Event]:
        """Oldest first, the last `limit`: all events, or those of one ticket, or of these kinds."""
        where, args = [], []
        if ticket_id is not None:
            where.append("ticket_id = ?")
            args.append(ticket_id)
        if kinds is not None:
            where.append(f"kind IN ({', '.join('?' for _ in kinds)})")
            args.extend(kinds)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM (SELECT * FROM events {clause}ORDER BY id DESC LIMIT ?) AS latest ORDER BY id",
                (*args, limit),
            ).fetchall()
        return [_event_from_row(r) for r in rows]

    def last_event_id(self) -> int:
        """The id of the newest event (0 for none): cheap, so watchers poll it for changes."""
        with self._reading() as conn:
            return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

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

    # ------------------------------------------------------------------ acting: verification credit

    def _credit(self, conn: Conn, ticket_id: int, proposal_id: int | None, t: Transition, actor: str) -> None:
        """The invariant holds again while the ticket was verifying after an action: the action is
        credited (`verified`) only when its own effect was confirmed (an `effect_confirmed` event
        for its proposal); otherwise `recovered` says it held again and the effect was not confirmed."""
        proposal = None if proposal_id is None else self._proposal(conn, proposal_id)
        data: dict[str, Any] = {"proposal": proposal_id}
        if proposal is not None:
            data.update(action=proposal.action, params=proposal.params)
        confirmed = proposal_id is not None and conn.execute(
            "SELECT 1 FROM events WHERE ticket_id = ? AND kind = 'effect_confirmed' AND "
            + self._dialect.json_equals("data", "proposal"),
            (ticket_id, proposal_id),
        ).fetchone() is not None
        data["effect_confirmed"] = confirmed
        conn.execute(
            "UPDATE tickets SET verify_deadline = NULL, next_attempt_at = NULL, parked = NULL WHERE id = ?", (ticket_id,)
        )
        self._insert_event(conn, "verified" if confirmed else "recovered", ticket_id, t.invariant, t.key, actor, t.at, data)

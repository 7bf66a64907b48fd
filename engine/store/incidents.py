"""The Store's incidents: tickets grouped by a key, each incident diagnosed through one lead
ticket; and muted tickets (recorded, parked, with the reason). Every change writes its event in
the same transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

from engine.store.base import StoreBase
from engine.store.records import _TICKET_COLUMNS, Incident, Ticket, _ticket_from_row
from engine.store.statuses import PARKED_GROUPED, PARKED_MUTED, RESOLVED

_INCIDENT_COLUMNS = "id, group_key, opened_at, resolved_at, lead_ticket_id"


class IncidentStore(StoreBase):
    """Incidents and muting of a Store."""

    def join_incident(self, ticket_id: int, group_key: str, *, at: float, actor: str = "engine") -> Incident:
        """Put a ticket into the open incident of its group, or a new one; the `incident` event
        says which, and whether it is new."""
        with self._transaction() as conn:
            ticket = self._require(conn, ticket_id, "group")
            row = conn.execute(
                "SELECT id FROM incidents WHERE group_key = ? AND resolved_at IS NULL ORDER BY id DESC LIMIT 1",
                (group_key,),
            ).fetchone()
            if row is None:
                incident_id = int(conn.execute(  # type: ignore[arg-type]
                    "INSERT INTO incidents (group_key, opened_at) VALUES (?, ?)", (group_key, at)
                ).lastrowid)
            else:
                incident_id = int(row[0])
            conn.execute("UPDATE tickets SET incident_id = ? WHERE id = ?", (incident_id, ticket_id))
            self._insert_event(conn, "incident", ticket_id, ticket.invariant, ticket.entity_key, actor, at,
                               {"incident": incident_id, "group": group_key, "new": row is None})
            return self._incident(conn, incident_id)  # type: ignore[return-value]

    def close_incidents(self, *, at: float) -> list[Incident]:
        """Incidents whose every ticket is resolved are resolved now; the ones that were."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT i.id FROM incidents i WHERE i.resolved_at IS NULL AND NOT EXISTS "
                f"(SELECT 1 FROM tickets t WHERE t.incident_id = i.id AND t.status != '{RESOLVED}')"
            ).fetchall()
            for (incident_id,) in rows:
                conn.execute("UPDATE incidents SET resolved_at = ? WHERE id = ?", (at, incident_id))
                lead = conn.execute("SELECT lead_ticket_id FROM incidents WHERE id = ?", (incident_id,)).fetchone()[0]
                if lead is not None:  # an incident never opened for people (all muted) is not resolved for them
                    ticket = self._ticket(conn, lead)
                    assert ticket is not None
                    self._insert_event(conn, "incident_resolved", lead, ticket.invariant, ticket.entity_key, "engine", at,
                                       {"incident": incident_id})
            return [self._incident(conn, r[0]) for r in rows]  # type: ignore[misc]

    def lead_incident(self, incident_id: int, ticket_id: int, *, at: float, actor: str = "engine") -> None:
        """The ticket through which the incident is diagnosed (set once): the incident is open
        for people from now on (the `incident_opened` event is what notifications say)."""
        with self._transaction() as conn:
            ticket = self._require(conn, ticket_id, "lead with")
            changed = conn.execute("UPDATE incidents SET lead_ticket_id = ? WHERE id = ? AND lead_ticket_id IS NULL",
                                   (ticket_id, incident_id)).rowcount
            if changed:
                self._insert_event(conn, "incident_opened", ticket_id, ticket.invariant, ticket.entity_key, actor, at,
                                   {"incident": incident_id})

    def group_ticket(self, ticket: Ticket, lead: int, *, at: float, actor: str = "engine") -> None:
        """Park a ticket whose incident is diagnosed through `lead`."""
        with self._transaction() as conn:
            conn.execute("UPDATE tickets SET parked = ? WHERE id = ? AND status != ?", (PARKED_GROUPED, ticket.id, RESOLVED))
            self._insert_event(conn, "grouped", ticket.id, ticket.invariant, ticket.entity_key, actor, at,
                               {"incident": ticket.incident_id, "diagnosed_with": lead,
                                "reason": f"incident #{ticket.incident_id} is diagnosed through ticket #{lead}"})

    def mute_ticket(self, ticket: Ticket, reason: str, *, at: float, actor: str = "engine") -> None:
        """Record a ticket only: parked, with why (the `muted` event)."""
        with self._transaction() as conn:
            conn.execute("UPDATE tickets SET parked = ?, muted_by = ? WHERE id = ? AND status != ?",
                         (PARKED_MUTED, reason, ticket.id, RESOLVED))
            self._insert_event(conn, "muted", ticket.id, ticket.invariant, ticket.entity_key, actor, at,
                               {"by": reason, "incident": ticket.incident_id})

    def episodes(self, invariants: list[str], *, since: float) -> list[tuple[str, str, float, float | None]]:
        """(invariant, key, first_seen, resolved_at) of the tickets of these invariants that are
        open or resolved since `since`: when each of them fired."""
        if not invariants:
            return []
        marks = ", ".join("?" for _ in invariants)
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT invariant, entity_key, first_seen, resolved_at FROM tickets WHERE invariant IN ({marks}) "
                "AND (resolved_at IS NULL OR resolved_at >= ?)", (*invariants, since),
            ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def incident(self, incident_id: int) -> Incident | None:
        with self._reading() as conn:
            return self._incident(conn, incident_id)

    def incidents(self, *, open_only: bool = False, limit: int = 50) -> list[Incident]:
        """Newest first."""
        where = "WHERE resolved_at IS NULL " if open_only else ""
        with self._reading() as conn:
            rows = conn.execute(f"SELECT id FROM incidents {where}ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            return [self._incident(conn, r[0]) for r in rows]  # type: ignore[misc]

    def incident_tickets(self, incident_id: int) -> list[Ticket]:
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE incident_id = ? ORDER BY id",
                                (incident_id,)).fetchall()
        return [_ticket_from_row(r) for r in rows]

    def count_events(self, kind: str, *, since: float | None = None) -> int:
        """How many events of one kind (since a time), e.g. `diagnosis` for the demo's figures."""
        sql, args = "SELECT COUNT(*) FROM events WHERE kind = ?", [kind]
        if since is not None:
            sql += " AND at >= ?"
            args.append(since)  # type: ignore[arg-type]
        with self._reading() as conn:
            return int(conn.execute(sql, args).fetchone()[0])

    @staticmethod
    def _incident(conn: sqlite3.Connection, incident_id: int) -> Incident | None:
        row: Any = conn.execute(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        if row is None:
            return None
        members = tuple(r[0] for r in conn.execute("SELECT id FROM tickets WHERE incident_id = ? ORDER BY id", (incident_id,)))
        return Incident(row[0], row[1], row[2], row[3], row[4], members)

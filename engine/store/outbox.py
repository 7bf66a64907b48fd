"""The Store's notification outbox: notifications written with the tick (from the audit events
since `notify_cursor`), delivered later by engine.notify's background thread, each delivery
attempt recorded. A row is delivered once: `pending` until `delivered`, `failed` (refused for
good) or `expired` (not delivered within its receiver's max_age)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.store.base import StoreBase
from engine.store.records import _EVENT_COLUMNS, Event, _dumps, _event_from_row

_OUTBOX_COLUMNS = ("id, receiver, event, source_event_id, ticket_id, payload, status, attempts, created_at, "
                   "next_attempt_at, delivered_at, last_error")


@dataclass(frozen=True)
class Outgoing:
    """One notification for one receiver."""

    id: int
    receiver: str
    event: str
    source_event_id: int
    ticket_id: int | None
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    delivered_at: float | None
    last_error: str | None


def _outgoing(r: tuple[Any, ...]) -> Outgoing:
    return Outgoing(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], r[9], r[10], r[11])


class OutboxStore(StoreBase):
    """The notification outbox of a Store."""

    def start_notify_cursor(self) -> None:
        """Where notifications start, once per store: after the newest event (history from
        before notifications were declared is not sent); a restart continues where it was."""
        with self._transaction() as conn:
            conn.execute("INSERT INTO notify_cursor (id, event_id) SELECT 1, COALESCE(MAX(id), 0) FROM events WHERE true ON CONFLICT DO NOTHING")

    def events_to_notify(self, *, limit: int = 1000) -> list[Event]:
        """Audit events after the notification cursor, oldest first."""
        self.start_notify_cursor()
        with self._reading() as conn:
            (after,) = conn.execute("SELECT event_id FROM notify_cursor WHERE id = 1").fetchone()
            rows = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?",
                                (after, limit)).fetchall()
        return [_event_from_row(r) for r in rows]

    def enqueue(self, rows: Iterable[tuple[str, str, int, int | None, dict[str, Any]]], *, through: int, at: float) -> int:
        """Queue (receiver, event, source event id, ticket id, payload) rows and move the cursor to
        `through`, in one transaction; a row already queued is not queued twice. How many were."""
        with self._transaction() as conn:
            added = 0
            for receiver, event, source, ticket_id, payload in rows:
                added += conn.execute(
                    "INSERT INTO outbox (receiver, event, source_event_id, ticket_id, payload, status, "
                    "created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT DO NOTHING",
                    (receiver, event, source, ticket_id, _dumps(payload), at, at),
                ).rowcount
            conn.execute("UPDATE notify_cursor SET event_id = CASE WHEN event_id > ? THEN event_id ELSE ? END WHERE id = 1", (through, through))
            return added

    def due_notifications(self, now: float, *, limit: int = 100) -> list[Outgoing]:
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                (now, limit),
            ).fetchall()
        return [_outgoing(r) for r in rows]

    def notifications(self, *, receiver: str | None = None) -> list[Outgoing]:
        """Every queued notification, oldest first."""
        sql, args = f"SELECT {_OUTBOX_COLUMNS} FROM outbox", ()
        if receiver is not None:
            sql, args = sql + " WHERE receiver = ?", (receiver,)
        with self._reading() as conn:
            return [_outgoing(r) for r in conn.execute(sql + " ORDER BY id", args).fetchall()]

    def record_delivery(
        self, item: Outgoing, *, status: str, at: float, error: str | None = None, retry_at: float | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """One attempt's outcome: `delivered`, `retry` (pending again from `retry_at`), `failed` or
        `expired`; the `notification` event on the ticket (or the subject) says so."""
        attempts = item.attempts + 1 if status != "expired" else item.attempts
        with self._transaction() as conn:
            if status == "retry":
                conn.execute("UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
                             (attempts, retry_at, error, item.id))
            else:
                conn.execute("UPDATE outbox SET status = ?, attempts = ?, delivered_at = ?, last_error = ? WHERE id = ?",
                             (status, attempts, at if status == "delivered" else None, error, item.id))
            ticket = self._ticket(conn, item.ticket_id) if item.ticket_id is not None else None
            data = {"receiver": item.receiver, "event": item.event, "id": item.payload.get("id"), "status": status,
                    "attempt": attempts, **({"error": error} if error else {}), **(detail or {})}
            self._insert_event(conn, "notification", item.ticket_id, ticket.invariant if ticket else None,
                               ticket.entity_key if ticket else None, f"notify:{item.receiver}", at, data)

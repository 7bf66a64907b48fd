"""Human-readable renderings (rich) of ticks, tickets and timelines; cli.py prints them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from engine.loop import TickReport
    from engine.store import Event, Ticket

_STATE_STYLE = {"ok": "green", "pending": "yellow", "firing": "bold red"}


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def live_view(report: TickReport, tickets: list[Ticket], subject: str) -> Group:
    header = Text(f"opctl · {subject} · tick {report.tick} at {when(report.at)} UTC · {report.duration_s * 1000:.0f} ms", style="bold")

    invariants = Table(title="Invariants", expand=True)
    for column in ("invariant", "ok", "pending", "firing", "health"):
        invariants.add_column(column)
    for name, info in report.invariants.items():
        health = Text("ok", style="green") if info["health"] == "ok" else Text(f"err: {info.get('error')}", style="red")
        invariants.add_row(
            name,
            str(info.get("ok", 0)),
            Text(str(info.get("pending", 0)), style="yellow" if info.get("pending") else ""),
            Text(str(info.get("firing", 0)), style="bold red" if info.get("firing") else ""),
            health,
        )

    observations = Table(title="Observations", expand=True)
    for column in ("observation", "status", "ms"):
        observations.add_column(column)
    for name, info in report.observations.items():
        status = Text("ok", style="green") if info["ok"] else Text(str(info.get("error")), style="red")
        if info["ok"] and info.get("endpoint_errors"):
            status = Text(f"partial: {len(info['endpoint_errors'])} endpoint(s) failed", style="yellow")
        observations.add_row(name, status, f"{info['duration_s'] * 1000:.0f}")

    return Group(header, invariants, observations, tickets_table(tickets, title="Open tickets"))


def tickets_table(tickets: list[Ticket], title: str = "Tickets") -> Table:
    table = Table(title=title, expand=True)
    for column in ("id", "status", "severity", "invariant", "key", "first seen", "last seen", "n", "message"):
        table.add_column(column)
    for t in tickets:
        status = t.status + (" (held)" if t.held else "")
        table.add_row(
            str(t.id), status, t.severity, t.invariant, t.entity_key or "-", when(t.first_seen), when(t.last_seen),
            str(t.occurrences), t.message,
        )
    return table


def ticket_detail(ticket: Ticket, events: list[Event]) -> Group:
    lines = Table.grid(padding=(0, 2))
    lines.add_column(style="bold")
    lines.add_column()
    for label, value in (
        ("ticket", f"#{ticket.id}"),
        ("invariant", ticket.invariant),
        ("entity", ticket.entity_key or "(cluster)"),
        ("status", ticket.status + (" (held)" if ticket.held else "")),
        ("severity", ticket.severity),
        ("first seen", when(ticket.first_seen)),
        ("last seen", when(ticket.last_seen)),
        ("resolved", when(ticket.resolved_at)),
        ("occurrences", str(ticket.occurrences)),
        ("previous ticket", f"#{ticket.previous_ticket_id}" if ticket.previous_ticket_id else "-"),
        ("labels", json.dumps(ticket.labels) if ticket.labels else "-"),
        ("message", ticket.message),
    ):
        lines.add_row(label, value)
    timeline = Table(title="Timeline", expand=True)
    for column in ("at (UTC)", "event", "actor", "details"):
        timeline.add_column(column)
    for event in events:
        timeline.add_row(when(event.at), event.kind, event.actor, _details(event.data))
    return Group(lines, timeline)


def _details(data: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, default=str) if not isinstance(v, str) else v}" for k, v in data.items())


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "invariant": ticket.invariant,
        "key": ticket.entity_key,
        "labels": ticket.labels,
        "severity": ticket.severity,
        "status": ticket.status,
        "held": ticket.held,
        "first_seen": ticket.first_seen,
        "last_seen": ticket.last_seen,
        "resolved_at": ticket.resolved_at,
        "occurrences": ticket.occurrences,
        "message": ticket.message,
        "previous_ticket_id": ticket.previous_ticket_id,
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "ticket_id": event.ticket_id,
        "invariant": event.invariant,
        "key": event.entity_key,
        "kind": event.kind,
        "actor": event.actor,
        "at": event.at,
        "data": event.data,
    }

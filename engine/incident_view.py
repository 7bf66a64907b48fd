"""How incidents are shown: `opctl incidents list` (each incident with its member tickets) and
`opctl incidents show` (one incident, its lead and every member ticket)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Group

from engine.store import Incident, Ticket
from engine.view import Column, Listing, _cells, _grid, plain, ticket_json, tickets_listing, when


def _members(incident: Incident, tickets: Mapping[int, Ticket]) -> str:
    parts = []
    for ticket_id in incident.ticket_ids:
        ticket = tickets.get(ticket_id)
        if ticket is None:
            continue
        mark = " lead" if ticket_id == incident.lead_ticket_id else " muted" if ticket.muted_by else ""
        key = f"[{ticket.entity_key}]" if ticket.entity_key else ""
        parts.append(f"#{ticket_id} {ticket.invariant}{key} {ticket.status}{mark}")
    return "; ".join(parts)


def incidents_listing(incidents: Iterable[Incident], tickets: Mapping[int, Ticket]) -> Listing:
    columns = (
        Column("id", keep=True, numeric=True), Column("status", keep=True), Column("group", drop=3),
        Column("opened", drop=1), Column("resolved", drop=2), Column("lead", numeric=True),
        Column("tickets", flex=True),
    )  # fmt: skip
    rows = tuple(
        _cells(
            i.id, plain("open", "bold red") if i.is_open else "resolved", i.group_key, when(i.opened_at),
            when(i.resolved_at), f"#{i.lead_ticket_id}" if i.lead_ticket_id else "-", _members(i, tickets),
        )
        for i in incidents
    )
    return Listing("Incidents", columns, rows)


def incident_detail(incident: Incident, members: Sequence[Ticket]) -> Group:
    rows: list[tuple[str, Any]] = [
        ("incident", f"#{incident.id}"),
        ("status", "open" if incident.is_open else "resolved"),
        ("group", incident.group_key),
        ("opened", when(incident.opened_at)),
        ("resolved", when(incident.resolved_at)),
        ("diagnosed with", f"ticket #{incident.lead_ticket_id}" if incident.lead_ticket_id else "- (not yet)"),
        ("muted tickets", sum(1 for t in members if t.muted_by) or "-"),
    ]
    return Group(_grid(rows), tickets_listing(members, title="Member tickets").flowing())


def incident_json(incident: Incident, members: Sequence[Ticket]) -> dict[str, Any]:
    return {
        "id": incident.id, "status": "open" if incident.is_open else "resolved", "group": incident.group_key,
        "opened_at": incident.opened_at, "resolved_at": incident.resolved_at, "lead_ticket_id": incident.lead_ticket_id,
        "tickets": [ticket_json(t) for t in members],
    }  # fmt: skip

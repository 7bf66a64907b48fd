"""Human-readable renderings (rich) of ticks, tickets and timelines; cli.py prints them."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from engine.durations import utc_text

if TYPE_CHECKING:
    from engine.loop import TickReport
    from engine.store import Event, Execution, Proposal, Ticket

_STATE_STYLE = {"ok": "green", "pending": "yellow", "firing": "bold red"}


def when(ts: float | None) -> str:
    return "-" if ts is None else utc_text(ts)


def live_view(report: TickReport, tickets: list[Ticket], subject: str) -> Group:
    header = Text(f"opctl · {subject} · tick {report.tick} at {when(report.at)} UTC · {report.duration_s * 1000:.0f} ms", style="bold")

    invariants = Table(title="Invariants", expand=True)
    for column in ("invariant", "ok", "pending", "firing", "unknown", "error", "health"):
        invariants.add_column(column)
    for name, info in report.invariants.items():
        health = Text("ok", style="green") if info["health"] == "ok" else Text(f"err: {info.get('error')}", style="red")
        counts = info.get("counts", info)
        invariants.add_row(
            name,
            str(counts.get("ok", 0)),
            Text(str(counts.get("pending", 0)), style="yellow" if counts.get("pending") else ""),
            Text(str(counts.get("firing", 0)), style="bold red" if counts.get("firing") else ""),
            Text(str(counts.get("unknown", 0)), style="magenta" if counts.get("unknown") else ""),
            Text(str(counts.get("error", 0)), style="red" if counts.get("error") else ""),
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


def ticket_detail(
    ticket: Ticket, events: list[Event], *, proposals: list[Proposal] | None = None, tokens: tuple[int, int] = (0, 0)
) -> Group:
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
    if ticket.verify_deadline is not None:
        lines.add_row("verify until", when(ticket.verify_deadline))
    if ticket.parked:
        lines.add_row("parked", ticket.parked)
    if tokens != (0, 0):
        lines.add_row("tokens", f"{tokens[0]} in, {tokens[1]} out")
    parts: list[Any] = [lines]
    diagnoses = [e for e in events if e.kind == "diagnosis"]
    if diagnoses:
        parts.append(diagnosis_panel(diagnoses[-1]))
    if proposals:
        parts.append(proposals_table(list(reversed(proposals)), title="Proposals"))
    timeline = Table(title="Timeline", expand=True)
    for column in ("at (UTC)", "event", "actor", "details"):
        timeline.add_column(column)
    for event in events:
        timeline.add_row(when(event.at), event.kind, event.actor, _details(event.data))
    parts.append(timeline)
    return Group(*parts)


def diagnosis_panel(event: Event) -> Table:
    """The latest diagnosis of a ticket, as a two-column grid."""
    d = event.data
    grid = Table(title=f"Diagnosis ({d.get('provider')}{', ' + str(d['model']) if d.get('model') else ''})", expand=True, show_header=False)
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("summary", str(d.get("summary", "")))
    grid.add_row("root cause", str(d.get("root_cause", "")))
    grid.add_row("confidence", str(d.get("confidence", "")))
    for item in d.get("evidence") or []:
        grid.add_row("evidence", str(item))
    for alt in d.get("alternatives_considered") or []:
        grid.add_row("rejected", f"{alt.get('hypothesis')}: {alt.get('why_rejected')}")
    for rec in d.get("recommended_actions") or []:
        grid.add_row("recommends", f"{rec.get('action')} {json.dumps(rec.get('params'), sort_keys=True)}: {rec.get('reason')}")
    if d.get("fallback_reason"):
        grid.add_row("fallback", str(d["fallback_reason"]))
    grid.add_row("tokens", f"{d.get('input_tokens', 0)} in, {d.get('output_tokens', 0)} out, {d.get('tool_calls', 0)} tool call(s)")
    return grid


def proposals_table(proposals: list[Proposal], title: str = "Proposals") -> Table:
    table = Table(title=title, expand=True)
    for column in ("id", "ticket", "action", "params", "status", "gate", "detail", "source", "updated"):
        table.add_column(column)
    for p in proposals:
        table.add_row(
            str(p.id), f"#{p.ticket_id}", p.action, json.dumps(p.params, sort_keys=True), p.status, p.gate or "-",
            p.detail or "-", p.source, when(p.updated_at),
        )
    return table


def proposal_detail(proposal: Proposal, executions: list[Execution]) -> Group:
    lines = Table.grid(padding=(0, 2))
    lines.add_column(style="bold")
    lines.add_column()
    for label, value in (
        ("proposal", f"#{proposal.id}"),
        ("ticket", f"#{proposal.ticket_id}"),
        ("action", proposal.action),
        ("params", json.dumps(proposal.params, sort_keys=True)),
        ("reason", proposal.reason or "-"),
        ("source", proposal.source),
        ("status", proposal.status),
        ("gate", proposal.gate or "-"),
        ("detail", proposal.detail or "-"),
        ("created", when(proposal.created_at)),
        ("expires", when(proposal.expires_at)),
        ("decided by", proposal.decided_by or "-"),
    ):
        lines.add_row(label, value)
    runs = Table(title="Executions", expand=True)
    for column in ("id", "request", "status", "started", "duration", "response", "error"):
        runs.add_column(column)
    for x in executions:
        duration = f"{x.duration_s * 1000:.0f} ms" if x.duration_s is not None else "-"
        runs.add_row(str(x.id), str(x.request.get("line", "")), x.status, when(x.started_at), duration, x.response or "-", x.error or "-")
    return Group(lines, runs)


def _details(data: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, default=str) if not isinstance(v, str) else v}" for k, v in data.items())


def record_json(record: Ticket | Event | Proposal | Execution, *, omit: tuple[str, ...] = ()) -> dict[str, Any]:
    """A store record as JSON for `--json` output; `entity_key` is shown as `key`."""
    return {
        ("key" if f.name == "entity_key" else f.name): getattr(record, f.name)
        for f in dataclasses.fields(record)
        if f.name not in omit
    }


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    """A ticket without its snapshot (shown apart by `tickets show --json`)."""
    return record_json(ticket, omit=("snapshot",))


"""Human-readable renderings (rich) of listings, tickets, proposals and the live view; cli.py prints them.

Every string that did not come from opctl itself (observed values, model output, store records)
goes through engine.safe_text: shown as plain text, never as rich markup, control characters
escaped.

Listings (`tickets list`, `actions list`, `lab status`, `demo --list`) are data first
(`Listing`: columns and rows) and rendered three ways: a table fitted to the terminal (columns
dropped, lowest priority first, until it fits; the columns marked `keep` are never dropped nor
cut, the others wrap), a wide table (every column, nothing wrapped) and TSV.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from engine.durations import utc_text
from engine.event_text import describe
from engine.safe_text import plain, safe

if TYPE_CHECKING:
    from engine.cockpit import Cockpit, ModeInfo, OpenTicket, StoreStatus
    from engine.loop import TickReport
    from engine.silences import Silence
    from engine.store import Event, Execution, Lease, Proposal, Ticket

STATES = ("ok", "pending", "firing", "unknown", "error")  # the per-invariant counts of a tick
_STATE_STYLE = {"ok": "green", "pending": "yellow", "firing": "bold red", "unknown": "magenta", "error": "red"}
_MODE_STYLE = {"observe": "cyan", "approve": "yellow", "execute": "bold magenta"}


def when(ts: float | None) -> str:
    return "-" if ts is None else utc_text(ts)


def clock_time(ts: float | None) -> str:
    return "-" if ts is None else utc_text(ts)[11:]


# ----------------------------------------------------------------------------- listings


FLEX_MIN = 24  # columns a wrapping text column gets at least when a table is fitted to a terminal


@dataclass(frozen=True)
class Column:
    """One column of a listing.

    Attributes:
        keep: never dropped, never cut (an id, an invariant, a status).
        drop: when the table must shrink to fit the terminal, lower values go first (0: never).
        wide: only in the wide table and TSV.
        flex: free text that wraps (a message): counted at FLEX_MIN columns when fitting.
    """

    name: str
    keep: bool = False
    drop: int = 0
    wide: bool = False
    numeric: bool = False
    flex: bool = False


@dataclass(frozen=True)
class Listing:
    title: str | None
    columns: tuple[Column, ...]
    rows: tuple[tuple[Text, ...], ...]
    header: bool = True
    rule: bool = True  # a line under the header (the live view saves it)

    def tsv(self) -> str:
        """A header line, then one line per row; tabs and newlines in values are escaped."""
        lines = ["\t".join(c.name for c in self.columns)]
        lines += ["\t".join(cell.plain for cell in row) for row in self.rows]
        return "\n".join(lines)

    def table(self, *, wide: bool = False, width: int | None = None) -> Table:
        """The table at its natural width (nothing wrapped or cut), or fitted to `width`: the
        droppable columns go, lowest priority first, until the others fit (free text wrapping)."""
        shown = [i for i, c in enumerate(self.columns) if wide or not c.wide]
        if width is not None:
            droppable = sorted((i for i in shown if self.columns[i].drop), key=lambda i: self.columns[i].drop)
            while droppable and self._needed(shown) > width:
                shown.remove(droppable.pop(0))
        return self._table(shown, fold=width is not None)

    def flowing(self) -> Table:
        """The default columns, wrapping to whatever width the table is given (inside a detail view)."""
        return self._table([i for i, c in enumerate(self.columns) if not c.wide], fold=True)

    def _needed(self, shown: list[int]) -> int:
        """Columns the shown columns need side by side (free text counted at FLEX_MIN)."""
        total = 2 * (len(shown) - 1)  # one space of padding on each side between columns
        for i in shown:
            column = self.columns[i]
            natural = max([len(column.name), *(row[i].cell_len for row in self.rows)])
            total += min(natural, FLEX_MIN) if column.flex else natural
        return total

    def _table(self, shown: list[int], *, fold: bool) -> Table:
        table = Table(
            title=self.title, box=box.SIMPLE_HEAD if self.rule else None, show_edge=False, pad_edge=False,
            title_justify="left", title_style="bold", show_header=self.header, header_style="bold underline" if not self.rule else "bold",
        )
        for i in shown:
            column = self.columns[i]
            table.add_column(
                column.name, no_wrap=column.keep or not fold, overflow="fold",
                justify="right" if column.numeric else "left",
            )
        for row in self.rows:
            table.add_row(*(row[i] for i in shown))
        return table


def _cells(*values: Any) -> tuple[Text, ...]:
    return tuple(v if isinstance(v, Text) else plain(v) for v in values)


def tickets_listing(tickets: Iterable[Ticket], title: str = "Tickets") -> Listing:
    columns = (
        Column("id", keep=True, numeric=True), Column("status", keep=True), Column("severity", drop=3),
        Column("invariant", keep=True), Column("key"), Column("first seen", drop=1), Column("last seen", drop=2),
        Column("n", drop=4, numeric=True), Column("message", flex=True), Column("labels", wide=True), Column("previous", wide=True),
        Column("parked", wide=True), Column("verify until", wide=True), Column("incident", drop=1), Column("muted by", wide=True),
    )  # fmt: skip
    rows = tuple(
        _cells(
            t.id, _status_text(t), t.severity, t.invariant, t.entity_key or "-", when(t.first_seen), when(t.last_seen),
            t.occurrences, t.message, json.dumps(t.labels, sort_keys=True) if t.labels else "-",
            f"#{t.previous_ticket_id}" if t.previous_ticket_id else "-", t.parked or "-", when(t.verify_deadline),
            f"#{t.incident_id}" if t.incident_id else "-", t.muted_by or "-",
        )
        for t in tickets
    )
    return Listing(title, columns, rows)


def silences_listing(silences: Iterable[Silence], now: float, title: str = "Silences") -> Listing:
    columns = (
        Column("id", keep=True, numeric=True), Column("state", keep=True), Column("matchers", keep=True),
        Column("starts", drop=2), Column("ends", drop=1), Column("by", drop=3), Column("comment", flex=True),
    )  # fmt: skip
    rows = tuple(
        _cells(s.id, s.state(now), " ".join(m.text() for m in s.matchers), when(s.starts_at), when(s.ends_at), s.created_by, s.comment)
        for s in silences
    )
    return Listing(title, columns, rows)


def proposals_listing(proposals: Iterable[Proposal], title: str = "Proposals") -> Listing:
    columns = (
        Column("id", keep=True, numeric=True), Column("ticket", keep=True), Column("action", keep=True),
        Column("params", drop=3), Column("status", keep=True), Column("gate", drop=4), Column("detail", drop=5, flex=True),
        Column("source", drop=1), Column("updated", drop=2), Column("reason", wide=True), Column("created", wide=True),
        Column("expires", wide=True), Column("decided by", wide=True),
    )  # fmt: skip
    rows = tuple(
        _cells(
            p.id, f"#{p.ticket_id}", p.action, _params_json(p.params), plain(p.status, _proposal_style(p.status)),
            p.gate or "-", p.detail or "-", p.source, when(p.updated_at), p.reason or "-", when(p.created_at),
            when(p.expires_at), p.decided_by or "-",
        )
        for p in proposals
    )
    return Listing(title, columns, rows)


def lab_listing(status: Any) -> Listing:
    state = "healthy" if status.healthy else "running" if status.running else "down"
    columns = (
        Column("process", keep=True), Column("running", keep=True), Column("ready", keep=True),
        Column("pid", drop=2, numeric=True), Column("endpoint", flex=True), Column("log", drop=1),
    )  # fmt: skip
    rows = tuple(
        _cells(p.name, "yes" if p.running else "no", "yes" if p.ready else "no", p.pid or "-", p.endpoint or "-", p.log)
        for p in status.processes
    )
    return Listing(f"lab {safe(status.lab)} · {state} · {safe(status.state_dir)}", columns, rows)


def scenarios_listing(entries: Sequence[tuple[str, Any]]) -> Listing:
    """(config path, lab Scenario) pairs: every scenario `opctl demo` can play."""
    columns = (
        Column("config", drop=1), Column("scenario", keep=True), Column("fires", keep=True), Column("key", drop=2),
        Column("action"), Column("description", wide=True, flex=True),
    )  # fmt: skip
    rows = tuple(
        _cells(config, s.name, s.expect.fires, s.expect.key or "-", s.expect.action or "-", " ".join(s.description.split()) or "-")
        for config, s in entries
    )
    return Listing("Scenarios", columns, rows)


def _status_text(ticket: Ticket) -> Text:
    return plain(ticket.status + (" (held)" if ticket.held else ""), "bold red" if ticket.status == "open" else "")


def _proposal_style(status: str) -> str:
    return {"awaiting_approval": "bold yellow", "refused": "red", "failed": "bold red", "succeeded": "green"}.get(status, "")


def _params_json(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


# ----------------------------------------------------------------------------- details


def _grid(rows: Iterable[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(Text(label), value if isinstance(value, Text) else plain(value, multiline=True))
    return grid


def ticket_detail(
    ticket: Ticket, events: list[Event], *, proposals: list[Proposal] | None = None, tokens: tuple[int, int] = (0, 0)
) -> Group:
    rows: list[tuple[str, Any]] = [
        ("ticket", f"#{ticket.id}"),
        ("invariant", ticket.invariant),
        ("entity", ticket.entity_key or "(cluster)"),
        ("status", _status_text(ticket)),
        ("severity", ticket.severity),
        ("first seen", when(ticket.first_seen)),
        ("last seen", when(ticket.last_seen)),
        ("resolved", when(ticket.resolved_at)),
        ("occurrences", ticket.occurrences),
        ("previous ticket", f"#{ticket.previous_ticket_id}" if ticket.previous_ticket_id else "-"),
        ("labels", json.dumps(ticket.labels) if ticket.labels else "-"),
        ("message", ticket.message),
    ]
    if ticket.verify_deadline is not None:
        rows.append(("verify until", when(ticket.verify_deadline)))
    if ticket.parked:
        rows.append(("parked", ticket.parked))
    if ticket.incident_id is not None:
        rows.append(("incident", f"#{ticket.incident_id}"))
    if ticket.muted_by is not None:  # recorded only: not diagnosed, notified or acted on
        rows.append(("muted", ticket.muted_by))
    if tokens != (0, 0):
        rows.append(("tokens", f"{tokens[0]} in, {tokens[1]} out"))
    parts: list[RenderableType] = [_grid(rows)]
    diagnoses = [e for e in events if e.kind == "diagnosis"]
    if diagnoses:
        parts.append(diagnosis_panel(diagnoses[-1]))
    if proposals:
        parts.append(proposals_listing(list(reversed(proposals))).flowing())
    timeline = Table(title="Timeline", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("at (UTC)", "event", "actor", "details"):
        timeline.add_column(column, overflow="fold", no_wrap=column != "details")
    for event in events:
        timeline.add_row(*_cells(when(event.at), event.kind, event.actor, _details(event.data)))
    parts.append(timeline)
    return Group(*parts)


def diagnosis_panel(event: Event) -> Table:
    """The latest diagnosis of a ticket, as a two-column grid."""
    d = event.data
    rows: list[tuple[str, Any]] = [
        ("summary", d.get("summary", "")),
        ("root cause", d.get("root_cause", "")),
        ("confidence", d.get("confidence", "")),
    ]
    rows += [("evidence", item) for item in d.get("evidence") or []]
    rows += [("rejected", f"{alt.get('hypothesis')}: {alt.get('why_rejected')}") for alt in d.get("alternatives_considered") or []]
    rows += [
        ("recommends", f"{rec.get('action')} {json.dumps(rec.get('params'), sort_keys=True)}: {rec.get('reason')}")
        for rec in d.get("recommended_actions") or []
    ]
    if d.get("fallback_reason"):
        rows.append(("fallback", d["fallback_reason"]))
    rows.append(("tokens", f"{d.get('input_tokens', 0)} in, {d.get('output_tokens', 0)} out, {d.get('tool_calls', 0)} tool call(s)"))
    grid = _grid(rows)
    grid.title = plain(f"Diagnosis ({d.get('provider')}{', ' + str(d['model']) if d.get('model') else ''})", "bold")
    grid.title_justify = "left"
    return grid


def proposal_detail(proposal: Proposal, executions: list[Execution]) -> Group:
    lines = _grid([
        ("proposal", f"#{proposal.id}"),
        ("ticket", f"#{proposal.ticket_id}"),
        ("action", proposal.action),
        ("params", _params_json(proposal.params)),
        ("reason", proposal.reason or "-"),
        ("source", proposal.source),
        ("status", plain(proposal.status, _proposal_style(proposal.status))),
        ("gate", proposal.gate or "-"),
        ("detail", proposal.detail or "-"),
        ("created", when(proposal.created_at)),
        ("expires", when(proposal.expires_at)),
        ("decided by", proposal.decided_by or "-"),
    ])  # fmt: skip
    runs = Table(title="Executions", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "request", "status", "started", "duration", "response", "error"):
        runs.add_column(column, overflow="fold")
    for x in executions:
        duration = f"{x.duration_s * 1000:.0f} ms" if x.duration_s is not None else "-"
        runs.add_row(*_cells(x.id, x.request.get("line", ""), x.status, when(x.started_at), duration, x.response or "-", x.error or "-"))
    return Group(lines, runs)


def _details(data: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, default=str) if not isinstance(v, str) else v}" for k, v in data.items())


# ----------------------------------------------------------------------------- the live view


@dataclass(frozen=True)
class _Budget:
    """How much of each section the live view shows; tighter budgets for smaller terminals."""

    all_invariants: bool = True
    tickets: int = 20
    recent: int = 12


_BUDGETS = (
    _Budget(),
    _Budget(recent=6),
    _Budget(all_invariants=False, recent=6),
    _Budget(all_invariants=False, tickets=10, recent=3),
    _Budget(all_invariants=False, tickets=5, recent=2),
    _Budget(all_invariants=False, tickets=3, recent=1),
    _Budget(all_invariants=False, tickets=1, recent=1),
    _Budget(all_invariants=False, tickets=1, recent=0),
)


def live_view(cockpit: Cockpit, *, width: int = 80, height: int | None = None) -> Group:
    """The live view of `opctl run` for a terminal of `width` x `height`: header (subject, mode and
    its source, kill switch, leader, tick), invariant states, failing observations, open tickets
    with the proposals awaiting approval and the command that approves each, the last actions.
    Sections shrink (healthy invariants summed up, fewer tickets and actions) until it fits."""
    measure = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    view = Group()
    for budget in _BUDGETS:
        view = Group(*_sections(cockpit, budget, width))
        if height is None or len(measure.render_lines(view, measure.options.update(width=width), pad=False)) <= height:
            break
    return view


def _sections(cockpit: Cockpit, budget: _Budget, width: int) -> list[RenderableType]:
    parts: list[RenderableType] = [*_header(cockpit)]
    parts.append(_invariants_table(cockpit.report, width, all_rows=budget.all_invariants))
    parts.append(_observations(cockpit.report))
    parts.extend(_tickets(cockpit, width, budget.tickets))
    if budget.recent:
        parts.append(_recent(cockpit, budget.recent, width))
    return parts


def _header(cockpit: Cockpit) -> list[Text]:
    report = cockpit.report
    first = Text.assemble(
        ("opctl", "bold"), " · ", plain(cockpit.subject, "bold"),
        f" · tick {report.tick} at {clock_time(report.at)} UTC ({report.duration_s * 1000:.0f} ms) · kill switch ",
    )  # fmt: skip
    if cockpit.kill is None:
        first.append("off", "green")
    else:
        kill = cockpit.kill
        first.append("ON", "bold reverse red")
        first.append_text(plain(f" by {kill['actor']} at {clock_time(kill['at'])}: {kill['value']}"))
    if cockpit.leader is not None:
        first.append(" · leader ")
        first.append_text(plain(cockpit.leader, "bold"))
    second = Text("mode ")
    second.append(cockpit.mode.mode, _MODE_STYLE.get(cockpit.mode.mode, "bold"))
    second.append(f" ({mode_source(cockpit.mode, short=True)})")
    return [first, second]


def mode_source(info: ModeInfo, *, short: bool = False) -> str:
    """Where the mode comes from, in words: `from the config`, or `set by cli:ann at ... with
    `opctl mode`; the config says observe`."""
    if info.source == "config":
        return "from the config"
    differs = f"; the config says {info.config_mode}" if info.mode != info.config_mode else ""
    if short:
        return f"set by {safe(info.actor)} {when(info.at)[:16]} UTC{differs}"
    return f"set by {safe(info.actor)} at {when(info.at)} UTC with `opctl mode`{differs}"


def _invariants_table(report: TickReport, width: int, *, all_rows: bool) -> Table:
    columns = (Column("invariant", keep=True), *(Column(s, keep=True, numeric=True) for s in STATES), Column("note", flex=True))
    rows: list[tuple[Text, ...]] = []
    healthy = 0
    for name, info in report.invariants.items():
        by_state = info.get("counts", info)  # `counts` holds every state; older reports had ok/pending/firing only
        counts = {s: _count(by_state.get(s)) for s in STATES}
        note = next((info[k] for k in ("error_message", "error") if isinstance(info.get(k), str) and info[k]), "")
        if info.get("state") == "unknown":  # its inputs are missing: never shown as ok
            note = f"unknown: {note}" if note else "unknown"
        if not all_rows and not note and not any(counts[s] for s in STATES if s != "ok"):
            healthy += 1
            continue
        rows.append(_cells(
            name, *(plain(counts[s], _STATE_STYLE[s] if counts[s] and s != "ok" else "") for s in STATES), plain(note, "red"),
        ))  # fmt: skip
    if healthy:
        rows.append(_cells(plain(f"+{healthy} more, all ok", "green"), *("" for _ in STATES), ""))
    return Listing(None, columns, tuple(rows), rule=False).table(width=width)


def _count(value: Any) -> int:
    """An entity count of the tick report; 0 when absent (or when `error` is the error's message,
    as before the report counted entities in the `error` state)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _observations(report: TickReport) -> Text:
    """One line when every observation answered; otherwise one line per failing observation,
    naming each failing endpoint and why."""
    failing = {n: o for n, o in report.observations.items() if not o["ok"] or o.get("endpoint_errors")}
    ok = len(report.observations) - len(failing)
    text = Text.assemble(("Observations", "bold"), f" {ok} of {len(report.observations)} ok")
    for name, info in failing.items():
        text.append("\n  ")
        text.append_text(plain(name, "bold"))
        if not info["ok"]:
            text.append(": failed: ", "red")
            text.append_text(plain(info.get("error") or "no answer"))
        endpoint_errors = info.get("endpoint_errors") or {}
        if endpoint_errors:
            text.append(f": {len(endpoint_errors)} endpoint(s) failed", "yellow")
            for endpoint, reason in endpoint_errors.items():
                text.append("\n    ")
                text.append_text(plain(f"{endpoint}: {reason}"))
    return text


def _tickets(cockpit: Cockpit, width: int, limit: int) -> list[RenderableType]:
    shown = cockpit.tickets[:limit]
    title = f"Open tickets ({len(cockpit.tickets)})" if cockpit.tickets else "Open tickets: none"
    if len(cockpit.tickets) > limit:
        title += f", {len(shown)} shown: `opctl tickets list` has all"
    if not shown:
        return [Text(title, style="bold")]
    listing = tickets_listing([t.ticket for t in shown], title=title)
    parts: list[RenderableType] = [dataclasses.replace(listing, rule=False).table(width=width)]
    approvals = _approvals(cockpit, cockpit.tickets)
    if approvals is not None:
        parts.append(approvals)
    return parts


def _approvals(cockpit: Cockpit, tickets: Sequence[OpenTicket]) -> Text | None:
    """Every proposal awaiting approval (never cut: this is what a human must act on)."""
    waiting = [(t.ticket, p) for t in tickets for p in t.awaiting]
    if not waiting:
        return None
    text = Text.assemble((f"Awaiting approval ({len(waiting)})", "bold yellow"))
    for ticket, proposal in waiting:
        text.append("\n  ")
        text.append_text(plain(f"#{proposal.id} {proposal.action}{_call(proposal.params)} for ticket #{ticket.id}"))
        if proposal.expires_at is not None:
            text.append(f", expires {clock_time(proposal.expires_at)}")
        text.append("\n    approve: ", "dim")
        text.append_text(plain(cockpit.approve_command(proposal.id), "bold"))
    return text


def _call(params: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def _recent(cockpit: Cockpit, limit: int, width: int) -> Table:
    """The last actions, newest last; a proposal still awaiting approval is shown above, with
    its command, not here."""
    waiting = {p.id for t in cockpit.tickets for p in t.awaiting}
    columns = (Column("at", keep=True), Column("what", keep=True), Column("event", flex=True))
    rows = []
    for event in cockpit.recent:
        described = describe(event)
        if described is not None and not (event.kind == "awaiting_approval" and event.data.get("proposal") in waiting):
            kind, sentence = described
            rows.append(_cells(clock_time(event.at), plain(kind, _event_style(kind)), sentence))
    title = "Recent actions" if rows else "Recent actions: none yet"
    return Listing(title, columns, tuple(rows[-limit:]), header=False).table(width=width)


def _event_style(kind: str) -> str:
    return {"executed": "green", "verified": "bold green", "refused": "red", "failed": "bold red",
            "escalated": "bold red", "proposed": "yellow"}.get(kind, "")  # fmt: skip


# ----------------------------------------------------------------------------- JSON


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



def leader_text(lease: Lease | None) -> str | None:
    """Who leads, for the live view: `this replica (a:1, token 3)` or `b:2 (token 4); following`."""
    if lease is None:
        return None
    if lease.leading:
        return f"this replica ({lease.replica}, token {lease.token})"
    holder = f"{lease.holder} (token {lease.token})" if lease.valid and lease.holder else "nobody"
    return f"{holder}; {lease.replica} follows"


def status_lines(status: StoreStatus) -> list[str]:
    """`opctl status` as text, one fact a line."""
    lease = status.lease
    if lease.holder is None:
        leader = "leader: none (no replica has run on this store)"
    elif lease.valid:
        leader = f"leader: {lease.holder} (token {lease.token}; lease expires at {when(lease.expires_at)} UTC, in {lease.expires_at - lease.now:.1f}s)"  # type: ignore[operator]
    else:
        leader = f"leader: none (the lease of {lease.holder}, token {lease.token}, expired at {when(lease.expires_at)} UTC)"
    kill = status.kill
    by = status.open_tickets
    lines = [
        f"store: {status.store}",
        leader,
        f"mode: {status.mode.mode} ({mode_source(status.mode)})",
        "kill switch: off" if kill is None else f"kill switch: ON (by {kill['actor']} at {when(kill['at'])} UTC: {kill['value']})",
        f"open tickets: {sum(by.values())} ({', '.join(f'{n} {s}' for s, n in by.items())}); {status.firing} still firing",
        f"pending approvals: {len(status.pending)}",
    ]
    lines += [f"  proposal #{p.id} ({p.action}) for ticket #{p.ticket_id}, expires {when(p.expires_at)} UTC" for p in status.pending]
    return lines

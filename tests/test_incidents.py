"""Incidents and muting end to end through the Monitor (real loopback HTTP server, real SQLite
store, injected clock, the offline runbook diagnoser): one cause is one incident diagnosed once;
an inhibited ticket is recorded with what inhibits it, and neither diagnosed nor acted on;
`group_wait` lets tickets of the next tick join before the first diagnosis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.config.validate import load_config
from engine.loop import Monitor
from engine.store import PARKED_GROUPED, PARKED_MUTED, Store
from tests.json_server import JsonServer
from tests.clock import Clock

CONFIG = """\
version: 1
subject: {{name: lab}}
targets:
  api: {{url: "{api}", timeout: 1s}}
interval: 2s
observations:
  nodes: {{http: {{target: api, path: /nodes}}, select: body.nodes}}
invariants:
  - name: redis_reachable
    severity: critical
    for_each: nodes
    key: item.id
    expr: item.redis
    for: {cause_for}
    runbook:
      - {{action: poke, params: {{node: item.id}}, reason: cause}}
  - name: latency
    severity: warning
    inhibited_by: [redis_reachable]
    for_each: nodes
    key: item.id
    expr: item.fast
    for: {symptom_for}
    runbook:
      - {{action: poke, params: {{node: item.id}}, reason: symptom}}
actions:
  - name: poke
    description: Poke a node.
    params: {{type: object, required: [node], additionalProperties: false, properties: {{node: {{type: string}}}}}}
    http: {{target: api, method: POST, path: "/poke/{{node}}"}}
    risk: low
    cooldown: 1s
diagnosis: {{provider: runbook}}
{incidents}
mode: observe
store: state.db
"""



def nodes(redis: bool, fast: bool, count: int = 3) -> dict[str, object]:
    return {"nodes": [{"id": f"n{i}", "redis": redis, "fast": fast} for i in range(1, count + 1)]}


def monitor_for(tmp_path: Path, srv: JsonServer, clock: Clock, *, cause_for: str = "2s", symptom_for: str = "2s",
                incidents: str = "") -> Monitor:
    config = tmp_path / "lab.yaml"
    config.write_text(CONFIG.format(api=srv.url, cause_for=cause_for, symptom_for=symptom_for, incidents=incidents))
    loaded = load_config(config)
    return Monitor(loaded, store=Store(loaded.store_path), clock=clock)


def run_ticks(monitor: Monitor, clock: Clock, count: int) -> None:
    async def go() -> None:
        for _ in range(count):
            await monitor.tick()
            clock.now += monitor.config.interval
        await monitor.aclose()

    asyncio.run(go())


@pytest.fixture
def srv() -> JsonServer:
    with JsonServer() as server:
        yield server


def test_one_cause_is_one_incident_with_one_diagnosis_and_inhibited_symptoms(tmp_path: Path, srv: JsonServer) -> None:
    srv.set("/nodes", nodes(redis=False, fast=False))  # Redis unreachable from every node, and slow
    clock = Clock()
    monitor = monitor_for(tmp_path, srv, clock, cause_for="2s", symptom_for="4s")
    run_ticks(monitor, clock, 6)
    store = monitor.store
    tickets = sorted(store.tickets(), key=lambda t: t.id)
    assert sorted((t.invariant, t.entity_key) for t in tickets) == [
        ("latency", "n1"), ("latency", "n2"), ("latency", "n3"),
        ("redis_reachable", "n1"), ("redis_reachable", "n2"), ("redis_reachable", "n3"),
    ]
    [incident] = store.incidents()
    assert incident.ticket_ids == tuple(t.id for t in tickets)  # group_by defaults to the subject
    assert store.count_events("diagnosis") == 1
    lead = store.ticket(incident.lead_ticket_id)  # type: ignore[arg-type]
    assert lead is not None and (lead.invariant, lead.entity_key) == ("redis_reachable", "n1")
    for ticket in tickets:
        if ticket.invariant == "latency":
            assert ticket.parked == PARKED_MUTED
            assert ticket.muted_by is not None and ticket.muted_by.startswith("inhibited by redis_reachable")
            kinds = [e.kind for e in store.events(ticket.id)]
            assert "muted" in kinds and "diagnosis" not in kinds
            assert store.proposals(ticket_id=ticket.id) == []
        elif ticket.id != lead.id:
            assert ticket.parked == PARKED_GROUPED
            [grouped] = [e for e in store.events(ticket.id) if e.kind == "grouped"]
            assert grouped.data["diagnosed_with"] == lead.id
    assert [p.reason for p in store.proposals(ticket_id=lead.id)] == ["cause"]


def test_group_wait_lets_a_more_severe_ticket_of_the_next_tick_lead(tmp_path: Path, srv: JsonServer) -> None:
    """The symptom fires first; with group_wait of one interval the cause, a tick later, still
    joins the incident before its first diagnosis, and leads it (the more severe one)."""
    srv.set("/nodes", nodes(redis=False, fast=False, count=1))
    clock = Clock()
    monitor = monitor_for(tmp_path, srv, clock, cause_for="4s", symptom_for="2s")
    run_ticks(monitor, clock, 5)
    store = monitor.store
    [incident] = store.incidents()
    assert len(incident.ticket_ids) == 2
    lead = store.ticket(incident.lead_ticket_id)  # type: ignore[arg-type]
    assert lead is not None and lead.invariant == "redis_reachable"
    assert store.count_events("diagnosis") == 1


def test_without_group_wait_the_first_ticket_leads_at_once(tmp_path: Path, srv: JsonServer) -> None:
    srv.set("/nodes", nodes(redis=False, fast=False, count=1))
    clock = Clock()
    monitor = monitor_for(tmp_path, srv, clock, cause_for="4s", symptom_for="2s", incidents="incidents: {group_wait: 0s}")
    run_ticks(monitor, clock, 5)
    [incident] = monitor.store.incidents()
    lead = monitor.store.ticket(incident.lead_ticket_id)  # type: ignore[arg-type]
    assert lead is not None and lead.invariant == "latency"
    assert monitor.store.count_events("diagnosis") == 1


def test_group_by_invariant_and_key_makes_one_incident_per_entity(tmp_path: Path, srv: JsonServer) -> None:
    srv.set("/nodes", nodes(redis=False, fast=True, count=2))
    clock = Clock()
    monitor = monitor_for(tmp_path, srv, clock, incidents="incidents: {group_by: [invariant, key]}")
    run_ticks(monitor, clock, 4)
    incidents = monitor.store.incidents()
    assert sorted(i.group_key for i in incidents) == ["invariant=redis_reachable,key=n1", "invariant=redis_reachable,key=n2"]
    assert monitor.store.count_events("diagnosis") == 2


@pytest.mark.parametrize("symptom_for", ["2s", "4s"])  # born in the cause's tick, or a tick later
def test_inhibited_symptoms_are_listed_under_their_causes_incident_whatever_the_grouping(
    tmp_path: Path, srv: JsonServer, symptom_for: str,
) -> None:
    srv.set("/nodes", nodes(redis=False, fast=False, count=2))
    clock = Clock()
    monitor = monitor_for(tmp_path, srv, clock, symptom_for=symptom_for, incidents="incidents: {group_by: [invariant], group_wait: 0s}")
    run_ticks(monitor, clock, 5)
    [incident] = monitor.store.incidents()
    assert incident.group_key == "invariant=redis_reachable"
    members = [monitor.store.ticket(i) for i in incident.ticket_ids]
    assert sorted((t.invariant, t.entity_key) for t in members if t is not None) == [
        ("latency", "n1"), ("latency", "n2"), ("redis_reachable", "n1"), ("redis_reachable", "n2")]
    assert all(t.muted_by is not None for t in members if t is not None and t.invariant == "latency")
    assert monitor.store.count_events("diagnosis") == 1


def test_incident_resolves_with_its_last_ticket_and_a_new_episode_is_a_new_incident(tmp_path: Path, srv: JsonServer) -> None:
    srv.set("/nodes", nodes(redis=False, fast=True, count=1))
    clock = Clock()
    monitor = monitor_for(tmp_path, srv, clock)
    run_ticks(monitor, clock, 4)
    srv.set("/nodes", nodes(redis=True, fast=True, count=1))
    again = Monitor(monitor.loaded, store=monitor.store, clock=clock)
    run_ticks(again, clock, 2)
    [first] = monitor.store.incidents()
    assert first.resolved_at is not None
    srv.set("/nodes", nodes(redis=False, fast=True, count=1))
    third = Monitor(monitor.loaded, store=monitor.store, clock=clock)
    run_ticks(third, clock, 4)
    newest, older = monitor.store.incidents()
    assert older.id == first.id and newest.id != first.id and newest.resolved_at is None
    assert monitor.store.count_events("diagnosis") == 2


def test_a_muted_ticket_stays_recorded_only_when_its_cause_heals_first(tmp_path: Path, srv: JsonServer) -> None:
    srv.set("/nodes", nodes(redis=False, fast=False, count=1))
    clock = Clock()
    monitor = monitor_for(tmp_path, srv, clock)
    run_ticks(monitor, clock, 4)
    srv.set("/nodes", nodes(redis=True, fast=False, count=1))  # the cause heals, the symptom lingers
    again = Monitor(monitor.loaded, store=monitor.store, clock=clock)
    run_ticks(again, clock, 3)
    [symptom] = [t for t in monitor.store.tickets() if t.invariant == "latency"]
    assert symptom.is_open and symptom.muted_by is not None and symptom.parked == PARKED_MUTED
    assert "diagnosis" not in [e.kind for e in monitor.store.events(symptom.id)]
    assert monitor.store.count_events("diagnosis") == 1


def test_a_symptom_that_fires_just_after_its_cause_resolved_is_still_muted(tmp_path: Path, srv: JsonServer) -> None:
    """The symptom's longer `for` makes it fire on the tick its cause resolves: its violation
    began while the cause fired, so it is the cause's symptom (not a second diagnosis)."""
    srv.set("/nodes", nodes(redis=False, fast=False, count=1))
    clock = Clock()
    monitor = monitor_for(tmp_path, srv, clock, cause_for="2s", symptom_for="6s")
    run_ticks(monitor, clock, 3)  # t=0, 2, 4: the cause fires at 2s; the symptom is pending
    srv.set("/nodes", nodes(redis=True, fast=False, count=1))
    again = Monitor(monitor.loaded, store=monitor.store, clock=clock)
    run_ticks(again, clock, 2)  # t=6: the cause resolves and the symptom fires
    [cause] = [t for t in monitor.store.tickets() if t.invariant == "redis_reachable"]
    [symptom] = [t for t in monitor.store.tickets() if t.invariant == "latency"]
    assert cause.status == "resolved" and symptom.first_seen >= (cause.resolved_at or 0)
    assert symptom.muted_by is not None and "while this violation began" in symptom.muted_by
    assert monitor.store.count_events("diagnosis") == 1


def test_a_target_that_fails_because_of_a_firing_cause_is_muted_by_its_inhibited_by(tmp_path: Path, srv: JsonServer) -> None:
    """A second target answers 503 because of the cause redis_reachable already reports: its
    `target_up` ticket is recorded, muted by the target's `inhibited_by`, and not diagnosed,
    though it is in an incident of its own (`group_by: [invariant]`). Without the inhibition it
    is a second diagnosis."""
    srv.set("/nodes", nodes(redis=False, fast=True))

    def diagnoses(inhibited_by: str) -> tuple[int, list[tuple[str, str, str | None]], list[str]]:
        with JsonServer() as status:
            status.set("/health", {"detail": "no database"}, status=503)
            config = tmp_path / f"lab{len(inhibited_by)}.yaml"
            text = CONFIG.format(api=srv.url, cause_for="2s", symptom_for="2s", incidents="incidents: {group_by: [invariant]}")
            text = text.replace("interval: 2s\n", f"  status: {{url: \"{status.url}\", down_after: 2s{inhibited_by}}}\ninterval: 2s\n", 1)
            text = text.replace("invariants:\n", "  health: {http: {target: status, path: /health}, select: body.ok}\ninvariants:\n"
                                "  - {name: healthy, expr: health, inhibited_by: [target_up]}\n", 1)
            config.write_text(text.replace("store: state.db", f"store: state{len(inhibited_by)}.db"))
            loaded = load_config(config)
            clock = Clock()
            monitor = Monitor(loaded, store=Store(loaded.store_path), clock=clock)
            run_ticks(monitor, clock, 4)
            tickets = [(t.invariant, t.entity_key, t.muted_by) for t in monitor.store.tickets() if t.invariant != "redis_reachable"]
            return monitor.store.count_events("diagnosis"), tickets, sorted(i.group_key for i in monitor.store.incidents())

    count, tickets, incidents = diagnoses(", inhibited_by: [redis_reachable]")
    assert count == 1
    [(invariant, key, muted_by)] = tickets
    assert (invariant, key) == ("target_up", "status") and muted_by is not None
    assert muted_by.startswith("inhibited by redis_reachable (firing for 'n1', 'n2', 'n3')")
    assert incidents == ["invariant=redis_reachable"]  # the target's ticket is listed under its cause
    count, tickets, incidents = diagnoses("")
    assert count == 2 and incidents == ["invariant=redis_reachable", "invariant=target_up"]
    assert [(i, k) for i, k, m in tickets if m is None] == [("target_up", "status")]

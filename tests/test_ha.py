"""Two replicas, exactly one acts (issue 15): real `opctl run` processes on one store and a real
HTTP node registry that logs who sent each request (`X-Replica`). The leader is SIGKILLed (a
follower takes over, the ticket continues, the remediation happens once; an execution it had
started is `unknown`, never replayed), SIGSTOPped past its lease (it executes nothing once
resumed and steps down), and killed at random between 20 fault → remediation rounds.

Takeover times are measured in benchmarks/engine_tick.py, not asserted here; what is asserted is
the order of things (the follower's token is the next one, taken after the old lease lapsed)."""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any

import pytest

from engine.lab.postgres_server import PostgresServer
from engine.store import Store
from tests.node_registry import NodeRegistry
from tests.replicas import Replicas, opctl, registry, registry_config, replicas  # noqa: F401  (fixtures)
from tests.waiting import wait_for


def read(replicas: Replicas, what: str, **kwargs: Any) -> Any:
    with Store(replicas.store) as store:
        return getattr(store, what)(**kwargs)


def leader_events(replicas: Replicas) -> list[dict[str, Any]]:
    return [e.data for e in read(replicas, "events", limit=100_000) if e.kind == "leader"]


@pytest.mark.slow
def test_the_leader_killed_a_follower_takes_over_and_the_ticket_continues(registry: NodeRegistry, replicas: Replicas) -> None:
    registry.nodes = {"n1": "up", "n2": "down"}
    data = registry_config(registry.url, mode="approve")
    a = replicas.opctl_run("a", data)
    first = replicas.wait_leader("a")
    b = replicas.opctl_run("b", data)
    wait_for(lambda: b.lines())
    assert not b.leading()
    [waiting] = wait_for(lambda: read(replicas, "proposals", status="awaiting_approval"))
    a.kill()  # SIGKILL: no clean hand-over
    taken = replicas.wait_leader("b", after_token=first.token)
    handover = leader_events(replicas)[-1]  # (a busy machine may have made `a` renew late and take a new token)
    assert handover == {"replica": "b", "token": taken.token, "previous": "a"}
    approved = opctl("actions", "approve", str(b.config), str(waiting.id))
    assert approved.returncode == 0, approved.stderr
    wait_for(lambda: read(replicas, "proposal", proposal_id=waiting.id).status == "succeeded")
    wait_for(lambda: read(replicas, "tickets", status="resolved"))
    [ticket] = read(replicas, "tickets", limit=100)
    assert ticket.id == waiting.ticket_id and ticket.status == "resolved"  # the same ticket, no second one
    assert registry.deletes() == ["/v1/nodes/n2"] and registry.deletes("b") == ["/v1/nodes/n2"]
    status = opctl("status", str(b.config), "--json")
    assert status.returncode == 0, status.stderr
    assert '"leader": "b"' in status.stdout and f'"token": {taken.token}' in status.stdout


@pytest.mark.slow
def test_an_execution_the_killed_leader_had_started_is_unknown_and_never_replayed(registry: NodeRegistry, replicas: Replicas) -> None:
    registry.nodes = {"n1": "up", "n2": "down"}
    registry.hold(lambda method, replica: method == "DELETE")  # the remediation hangs in flight
    data = registry_config(registry.url)
    a = replicas.opctl_run("a", data)
    first = replicas.wait_leader("a")
    b = replicas.opctl_run("b", data)
    registry.wait_held(1)
    wait_for(lambda: b.lines())
    a.kill()
    registry.release()
    replicas.wait_leader("b", after_token=first.token)
    [execution] = wait_for(lambda: [e for e in read(replicas, "executions") if e.status != "executing"])
    assert execution.status == "unknown"
    ticks = len(b.lines())
    wait_for(lambda: len(b.lines()) > ticks + 5)  # the new leader keeps acting: nothing is replayed
    [ticket] = read(replicas, "tickets", limit=100)  # the same ticket (resolved once the node is gone)
    [failed] = [e for e in read(replicas, "events", ticket_id=ticket.id) if e.kind == "failed"]
    assert failed.actor == "engine" and "not re-run" in failed.data["detail"]
    assert read(replicas, "proposal", proposal_id=execution.proposal_id).status == "failed"
    assert registry.deletes() == ["/v1/nodes/n2"] and registry.deletes("b") == []


@pytest.mark.slow
def test_a_leader_paused_past_its_lease_executes_nothing_and_steps_down(registry: NodeRegistry, replicas: Replicas) -> None:
    registry.nodes = {"n1": "up", "n2": "down"}
    # a lease longer than the test holds the leader's observation while it approves (the leader
    # must still lead when its guard runs), short enough for the follower to take over soon after
    data = registry_config(registry.url, mode="approve", lease={"ttl": "8s"})
    a = replicas.opctl_run("a", data)
    first = replicas.wait_leader("a")
    b = replicas.opctl_run("b", data)
    wait_for(lambda: b.lines())
    [waiting] = wait_for(lambda: read(replicas, "proposals", status="awaiting_approval"))
    # the leader is caught in the middle of acting: its guard's observation is in flight...
    registry.hold(lambda method, replica: method == "GET" and replica == "a")
    registry.wait_held(1)
    with Store(replicas.store) as store:  # (not the CLI: the leader's lease runs while it waits)
        store.approve(waiting.id, actor="cli:test")
    registry.release_held()
    registry.wait_held(2)
    # ... when it is paused, past its lease
    a.signal(signal.SIGSTOP)
    paused_at = len(a.lines())
    registry.release()
    replicas.wait_leader("b", after_token=first.token)
    wait_for(lambda: read(replicas, "proposal", proposal_id=waiting.id).status == "succeeded")
    assert registry.deletes("b") == ["/v1/nodes/n2"]
    a.signal(signal.SIGCONT)
    # it wakes up with a cleared guard in hand: the start is fenced, it steps down by itself
    wait_for(lambda: len(a.lines()) > paused_at and not a.lines()[-1]["leader"]["leading"])
    [woke, *_] = a.lines()[paused_at:]
    assert "no longer current" in woke["store_error"] and "held by b" in woke["store_error"]
    assert woke["actions"] == [] and not woke["leader"]["leading"]
    ticks = len(a.lines())
    wait_for(lambda: len(a.lines()) > ticks + 3)
    assert all(not line["leader"]["leading"] for line in a.lines()[ticks:])
    assert registry.deletes("a") == [] and registry.deletes() == ["/v1/nodes/n2"]
    assert len(read(replicas, "executions")) == 1


ROUNDS = 20


@pytest.mark.slow
def test_twenty_rounds_with_a_random_replica_killed_between_them_remediate_exactly_twenty_times(
    registry: NodeRegistry, replicas: Replicas
) -> None:
    chance = random.Random(15)
    data = registry_config(registry.url, lease={"ttl": "600ms"})
    registry.nodes = {"n1": "up"}
    running = {name: replicas.opctl_run(name, data) for name in ("a", "b")}
    wait_for(lambda: replicas.exists() and replicas.lease().valid)
    for round_ in range(ROUNDS):
        node = f"r{round_:02d}"
        registry.nodes[node] = "down"  # the fault
        wait_for(lambda n=node: f"/v1/nodes/{n}" in registry.deletes(), timeout=60)  # the remediation
        victim = chance.choice(sorted(running))
        running[victim].kill()
        running[victim] = replicas.opctl_run(victim, data)  # restarted under the same id
    wait_for(lambda: read(replicas, "open_ticket_count") == 0 or all(t.status == "escalated" for t in read(replicas, "tickets", status="open")), timeout=60)
    assert sorted(registry.deletes()) == sorted(f"/v1/nodes/r{i:02d}" for i in range(ROUNDS))
    executions = read(replicas, "executions", limit=1000)
    assert len(executions) == ROUNDS and len({e.proposal_id for e in executions}) == ROUNDS
    tokens = [e["token"] for e in leader_events(replicas)]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


@pytest.mark.slow
def test_postgresql_restarted_under_two_replicas_loses_no_ticket_and_doubles_nothing(
    registry: NodeRegistry, tmp_path: Path, own_postgres: PostgresServer
) -> None:
    replicas = Replicas(tmp_path, own_postgres.create_database("ha_restart"))
    try:
        registry.nodes = {"n1": "up", "n2": "down"}
        data = registry_config(registry.url)
        a = replicas.opctl_run("a", data)
        replicas.wait_leader("a")
        b = replicas.opctl_run("b", data)
        wait_for(lambda: b.lines())  # running (a replica that cannot open the store at start exits, and says so)
        wait_for(lambda: registry.deletes() == ["/v1/nodes/n2"])
        wait_for(lambda: [t.status for t in read(replicas, "tickets", limit=100)] == ["resolved"])
        own_postgres.stop()
        # both keep observing and say loudly that the store is failing; a fault meanwhile waits
        registry.nodes["n3"] = "down"
        for replica in (a, b):
            wait_for(lambda replica=replica: [line for line in replica.lines()[-3:] if line.get("store_error")])
            assert replica.proc is not None and replica.proc.poll() is None
        ticks = {replica.name: len(replica.lines()) for replica in (a, b)}
        wait_for(lambda: all(len(r.lines()) > ticks[r.name] + 3 for r in (a, b)))  # still ticking while it is down
        assert registry.deletes() == ["/v1/nodes/n2"]  # nothing acted without a store to record it
        own_postgres.start()
        wait_for(lambda: registry.deletes() == ["/v1/nodes/n2", "/v1/nodes/n3"])
        wait_for(lambda: [t.status for t in read(replicas, "tickets", limit=100)] == ["resolved", "resolved"])
        tickets = read(replicas, "tickets", limit=100)
        assert sorted(t.entity_key for t in tickets) == ["n2", "n3"]  # no ticket lost, none doubled
        assert sorted(e.status for e in read(replicas, "executions")) == ["succeeded", "succeeded"]
        after = {replica.name: len(replica.lines()) for replica in (a, b)}
        wait_for(lambda: all(len(r.lines()) > after[r.name] + 5 for r in (a, b)))
        assert registry.deletes() == ["/v1/nodes/n2", "/v1/nodes/n3"]  # and nothing twice afterwards
    finally:
        replicas.stop()

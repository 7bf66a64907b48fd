"""The gate's last word is atomic (issue 20, finding 1 and 2), with real processes: a reject or
the kill switch while a slow guard is in flight always wins, and two engine loops on one store
racing over 60 approvals run each proposal exactly once, every status true."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.store import Store
from tests.node_registry import NodeRegistry
from tests.replicas import Replicas, opctl, registry, registry_config, replicas  # noqa: F401  (fixtures)
from tests.waiting import wait_for


def read(db: Path | str, what: str, **kwargs: Any) -> Any:
    with Store(db) as store:
        return getattr(store, what)(**kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("command", [("actions", "reject"), ("kill",)], ids=["reject", "kill"])
def test_a_reject_or_the_kill_switch_during_a_slow_guard_wins(
    registry: NodeRegistry, replicas: Replicas, command: tuple[str, ...]
) -> None:
    registry.nodes = {"n1": "up", "n2": "down"}
    # one replica; a lease longer than the test holds its requests (a lapsed lease refuses first)
    engine = replicas.opctl_run("a", registry_config(registry.url, mode="approve", lease={"ttl": "5m"}))
    [waiting] = wait_for(lambda: replicas.exists() and read(replicas.store, "proposals", status="awaiting_approval"))
    # the target becomes slow: the engine's GETs wait until the test lets them through
    registry.hold(lambda method, replica: method == "GET" and replica == "a")
    registry.wait_held(1)  # the tick's observation: its acting stage comes after it
    approved = opctl("actions", "approve", str(engine.config), str(waiting.id))
    assert approved.returncode == 0, approved.stderr
    registry.release_held()
    registry.wait_held(2)  # the guard's fresh observation of the approved proposal is in flight
    args = [*command, str(engine.config), *([str(waiting.id)] if command[0] == "actions" else [])]
    decided = opctl(*args)
    assert decided.returncode == 0, decided.stderr
    registry.release()
    lost = wait_for(lambda: [e for e in read(replicas.store, "events", ticket_id=waiting.ticket_id) if e.kind == "lost_race"])
    kinds = [e.kind for e in read(replicas.store, "events", ticket_id=waiting.ticket_id)]
    final = "rejected" if command[0] == "actions" else "cancelled"
    assert kinds[kinds.index("approved"):] [:3] == ["approved", final, "lost_race"]
    assert "executing" not in kinds and "succeeded" not in kinds
    assert lost[0].data["status"] == final and "no longer approved" in lost[0].data["reason"]
    assert read(replicas.store, "proposal", proposal_id=waiting.id).status == final
    assert read(replicas.store, "executions") == []
    assert registry.deletes() == []


@pytest.mark.slow
def test_a_guard_whose_observation_is_slower_than_its_deadline_refuses(registry: NodeRegistry, replicas: Replicas) -> None:
    registry.nodes = {"n1": "up", "n2": "down"}
    data = registry_config(registry.url, mode="approve", gate={"budget_per_hour": 1000, "guard_timeout": "300ms"}, lease={"ttl": "5m"})
    engine = replicas.opctl_run("a", data)
    [waiting] = wait_for(lambda: replicas.exists() and read(replicas.store, "proposals", status="awaiting_approval"))
    registry.hold(lambda method, replica: method == "GET" and replica == "a")
    registry.wait_held(1)
    assert opctl("actions", "approve", str(engine.config), str(waiting.id)).returncode == 0
    registry.release_held()
    registry.wait_held(2)  # the guard's observation: held past the guard's deadline
    refused = wait_for(lambda: (p := read(replicas.store, "proposal", proposal_id=waiting.id)).status == "refused" and p)
    registry.release()
    assert refused.gate == "guard" and "did not answer within gate.guard_timeout (300ms)" in (refused.detail or "")
    assert registry.deletes() == []


NODES = 60


@pytest.mark.slow
@pytest.mark.parametrize(
    ("loops", "limits"),
    [
        ("unleased", {"cooldown": "10m"}),
        ("unleased", {"cooldown": "0s", "max_attempts": 3}),
        ("opctl_run", {"cooldown": "0s", "max_attempts": 3}),
    ],
    ids=["unleased", "unleased-cooldown0-3attempts", "opctl-run-cooldown0-3attempts"],
)
def test_two_loops_racing_over_60_approvals_run_each_exactly_once(
    registry: NodeRegistry, replicas: Replicas, loops: str, limits: dict[str, Any]
) -> None:
    registry.nodes = {f"n{i:02d}": "down" for i in range(NODES)}
    data = registry_config(registry.url, mode="approve")
    data["actions"][0].update(limits)
    start = getattr(replicas, loops)
    first = start("a", data)
    waiting = wait_for(
        lambda: replicas.exists() and len(found := read(replicas.store, "proposals", status="awaiting_approval")) == NODES and found,
        timeout=120,  # the first tick opens and diagnoses 60 tickets
    )
    second = start("b", data)
    wait_for(lambda: second.lines())  # the second loop has joined
    ticks = len(first.lines())
    with Store(replicas.store) as store:  # one burst of approvals, from a third process
        for proposal in waiting:
            store.approve(proposal.id, actor="cli:test")

    def settled() -> bool:
        live = read(replicas.store, "proposals", status="approved") + read(replicas.store, "proposals", status="executing")
        return not live

    wait_for(settled, timeout=120)
    wait_for(lambda: len(first.lines()) > ticks + 1 and len(second.lines()) > 1)  # both loops ticked after it
    executions = read(replicas.store, "executions", limit=10_000)
    proposals = read(replicas.store, "proposals", limit=10_000)
    assert len(executions) == NODES == len({e.proposal_id for e in executions})
    assert sorted(p.status for p in proposals) == ["succeeded"] * NODES
    assert all(e.status == "succeeded" for e in executions)
    assert sorted(registry.deletes()) == sorted(f"/v1/nodes/n{i:02d}" for i in range(NODES))

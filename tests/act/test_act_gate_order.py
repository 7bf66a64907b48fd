"""Each gate's own boundary, checked on the real gate with a real store and real fresh
observations of a loopback API: the kill switch comes before everything, in-flight, cooldown
(`<`: a run exactly `cooldown` ago no longer blocks) and attempts (`>=`: the max-th run is the last).
Each of these is a one-line change the rest of the suite once let through (issue 20, point 9)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.act.gate import ActionGate, Cleared, Refusal
from engine.store import Execution, StartRule
from tests.act.act_support import START, Engine, action, api, config_data, open_engine
from tests.json_server import JsonServer

COOLDOWN = 600.0  # deregister_node's `cooldown: 10m` in act_support


@pytest.fixture
def server() -> Iterator[JsonServer]:
    yield from api()


@pytest.fixture
def engine(tmp_path: Path, server: JsonServer, request: pytest.FixtureRequest) -> Iterator[Engine]:
    data = config_data(server.url, mode="observe")
    action(data, "deregister_node")["max_attempts"] = getattr(request, "param", 1)
    built = open_engine(tmp_path, data)
    built.tick()
    yield built
    built.close()


def check(engine: Engine, name: str = "deregister_node", *, now: float, proposal_id: int | None = None) -> Cleared | Refusal:
    gate = ActionGate(engine.loaded.config, engine.store, engine.monitor.observer.observe)
    ticket = engine.only_ticket()
    return engine.runner.run(gate.check(ticket=ticket, firing=True, action_name=name, params={"node_id": "n2"}, now=now, prev={},
                                        proposal_id=proposal_id))


def ran_once(engine: Engine, at: float) -> None:
    ticket = engine.only_ticket()
    proposal = engine.store.add_proposal(ticket.id, action="deregister_node", params={"node_id": "n2"}, reason="r",
                                         source="runbook", status="approved", at=at)
    rule = StartRule.of(engine.monitor.config.action("deregister_node"), "n2", total_budget_per_hour=1000)
    execution = engine.store.begin_execution(proposal.id, request={"line": "DELETE /v1/nodes/n2"}, at=at, rule=rule)
    assert isinstance(execution, Execution)
    engine.store.finish_execution(execution.id, ok=True, duration_s=0.01, response="", error=None, at=at)


def gate_of(decision: Any) -> str:
    return decision.gate if isinstance(decision, Refusal) else "cleared"


def test_the_kill_switch_is_the_first_gate_even_for_an_undeclared_action(engine: Engine) -> None:
    engine.store.kill(actor="cli:carol", reason="incident")
    decision = check(engine, "format_disks", now=START + 1)
    assert gate_of(decision) == "kill_switch" and decision.park == "kill_switch"  # type: ignore[union-attr]
    engine.store.resume(actor="cli:carol")
    assert gate_of(check(engine, "format_disks", now=START + 1)) == "declared"


def test_another_live_proposal_of_the_ticket_is_in_flight(engine: Engine) -> None:
    assert gate_of(check(engine, now=START + 1)) == "cleared"
    waiting = engine.store.add_proposal(engine.only_ticket().id, action="deregister_node", params={"node_id": "n2"}, reason="r",
                                        source="runbook", status="awaiting_approval", at=START + 1)
    decision = check(engine, now=START + 2)
    assert gate_of(decision) == "in_flight" and f"proposal #{waiting.id}" in decision.reason  # type: ignore[union-attr]
    assert gate_of(check(engine, now=START + 2, proposal_id=waiting.id)) == "cleared"  # the proposal itself is not "another"


@pytest.mark.parametrize("engine", [2], indirect=True)
def test_the_cooldown_ends_exactly_cooldown_after_the_last_run(engine: Engine) -> None:
    ran_once(engine, START + 10)
    assert gate_of(check(engine, now=START + 10 + COOLDOWN - 0.001)) == "cooldown"
    assert gate_of(check(engine, now=START + 10 + COOLDOWN)) == "cleared"


def test_max_attempts_is_the_last_run(engine: Engine) -> None:
    ran_once(engine, START + 10)
    decision = check(engine, now=START + 10 + COOLDOWN + 1)
    assert gate_of(decision) == "attempts" and "already ran 1 time(s)" in decision.reason  # type: ignore[union-attr]

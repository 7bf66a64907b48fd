"""Actions clean up after themselves (`revert`), and credit is honest (`verify.expr`): through the
real loop on a virtual clock, offline (the runbook), with a real loopback API and a real SQLite
store; the crash test kills a real `opctl run` process.

The subject: a node that goes down is fenced (`fence_node`); once its ticket has resolved and the
node is up again, the fence is lifted (`unfence_node`, the revert). `fenced` is what the API says
is fenced; the test sets it as the API would after each request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.store import Store
from tests.act.act_support import NODE_ID, SECRET, START, Engine, config_data, nodes, open_engine
from tests.json_server import JsonServer
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
UP = 'nodes.exists(n, n.id == params.node_id && n.state == "up")'
FENCED = "fenced.exists(f, f == params.node_id)"


def revert_config(url: str, **overrides: Any) -> dict[str, Any]:
    params = {"type": "object", "required": ["node_id"], "additionalProperties": False, "properties": {"node_id": NODE_ID}}
    data = config_data(url, diagnosis={"provider": "runbook"}, **overrides)
    data["observations"]["fenced"] = {"http": {"target": "api", "path": "/v1/fenced"}, "select": "body.fenced"}
    data["invariants"][0]["runbook"] = [{"action": "fence_node", "params": {"node_id": "item.id"}}]
    data["actions"] = [
        {
            "name": "fence_node",
            "description": "Keep work off a node that went down.",
            "params": params,
            "when": "!(" + FENCED + ")",
            "http": {"target": "api", "method": "POST", "path": "/v1/nodes/{node_id}/fence"},
            "cooldown": "10m",
            "verify": {"within": "1m", "expr": FENCED},
            "revert": {"action": "unfence_node", "params": {"node_id": "params.node_id"}, "when": UP},
        },
        {
            "name": "unfence_node",
            "description": "Let work back onto a node.",
            "params": params,
            "when": FENCED,
            "http": {"target": "api", "method": "DELETE", "path": "/v1/nodes/{node_id}/fence"},
            "cooldown": "1m",
        },
    ]
    return data


@pytest.fixture
def server() -> Iterator[JsonServer]:
    with JsonServer() as api:
        api.set("/v1/nodes", nodes("n2"))
        api.set("/v1/fenced", {"fenced": []})
        api.set("/v1/nodes/n2/fence", {"ok": True})
        yield api


@pytest.fixture
def engine(tmp_path: Path, server: JsonServer) -> Iterator[Engine]:
    opened = open_engine(tmp_path, revert_config(server.url))
    yield opened
    opened.close()


def requests(server: JsonServer) -> list[str]:
    return [f"{m} {p}" for m, p, _, _ in server.requests if not (m == "GET" and p in ("/v1/nodes", "/v1/fenced"))]


def fenced(server: JsonServer) -> None:
    """What the API answers once the fence request went through."""
    server.set("/v1/fenced", {"fenced": ["n2"]})


def test_the_revert_runs_once_after_resolution_and_only_when_its_when_holds(engine: Engine, server: JsonServer) -> None:
    engine.tick()
    ticket = engine.only_ticket()
    assert requests(server) == ["POST /v1/nodes/n2/fence"] and ticket.status == "verifying"
    [armed] = engine.store.reverts(ticket_id=ticket.id)
    assert (armed.action, armed.params, armed.status) == ("fence_node", {"node_id": "n2"}, "armed")
    fenced(server)
    engine.tick(START + 1)  # still down: the ticket is open, the revert waits for it
    # The node leaves the registry: the ticket resolves, but the revert's `when` (the node is up) does not hold.
    server.set("/v1/nodes", nodes())
    for at in (2, 3, 4):
        engine.tick(START + at)
    assert engine.ticket(ticket.id).status == "resolved"
    assert requests(server) == ["POST /v1/nodes/n2/fence"]
    [waiting] = engine.events(ticket.id, "revert_waiting")  # said once, not every tick
    assert waiting.data["reason"] == f"waiting for its `when` to hold: {UP}"
    # The node is back and up: the revert passes every gate and runs, once, on the same ticket.
    server.set("/v1/nodes", nodes(up=("n1", "n2")))
    engine.tick(START + 5)
    assert requests(server) == ["POST /v1/nodes/n2/fence", "DELETE /v1/nodes/n2/fence"]
    server.set("/v1/fenced", {"fenced": []})
    for at in (6, 7, 80):
        engine.tick(START + at)
    assert requests(server) == ["POST /v1/nodes/n2/fence", "DELETE /v1/nodes/n2/fence"]
    [revert] = [p for p in engine.proposals(ticket.id) if p.source == "revert"]
    assert (revert.action, revert.params, revert.status) == ("unfence_node", {"node_id": "n2"}, "succeeded")
    assert engine.store.reverts(ticket_id=ticket.id)[0].status == "done"
    kinds = engine.kinds(ticket.id)
    assert kinds[kinds.index("resolved"):] == ["resolved", "incident_resolved", "revert_waiting", "approved", "executing", "succeeded", "reverted"]
    assert [t.id for t in engine.store.tickets()] == [ticket.id]  # nothing else opened


def test_the_kill_switch_holds_the_revert_until_resume(engine: Engine, server: JsonServer) -> None:
    engine.tick()
    ticket = engine.only_ticket()
    fenced(server)
    engine.store.kill(actor="cli:erin", reason="change freeze")
    server.set("/v1/nodes", nodes(up=("n1", "n2")))
    engine.tick(START + 1)
    engine.tick(START + 2)
    assert engine.ticket(ticket.id).status == "resolved"
    assert requests(server) == ["POST /v1/nodes/n2/fence"]  # it waits
    [waiting] = engine.events(ticket.id, "revert_waiting")
    assert waiting.data["reason"].startswith("gate kill_switch: the kill switch is on (turned on by cli:erin)")
    engine.store.resume(actor="cli:erin")
    engine.tick(START + 3)
    assert requests(server) == ["POST /v1/nodes/n2/fence", "DELETE /v1/nodes/n2/fence"]


def test_the_revert_follows_the_mode_observe_records_approve_waits(engine: Engine, server: JsonServer) -> None:
    engine.tick()
    ticket = engine.only_ticket()
    fenced(server)
    engine.store.set_mode("observe", actor="cli:erin")
    server.set("/v1/nodes", nodes(up=("n1", "n2")))
    engine.tick(START + 1)
    engine.tick(START + 2)
    [recorded] = [p for p in engine.proposals(ticket.id) if p.source == "revert"]
    assert recorded.status == "proposed" and requests(server) == ["POST /v1/nodes/n2/fence"]
    engine.store.set_mode("approve", actor="cli:erin")
    engine.tick(START + 3)
    waiting = [p for p in engine.proposals(ticket.id) if p.source == "revert"][-1]
    assert waiting.status == "awaiting_approval" and requests(server) == ["POST /v1/nodes/n2/fence"]
    engine.store.approve(waiting.id, actor="cli:erin")
    engine.tick(START + 4)  # every gate again, then it runs
    assert requests(server) == ["POST /v1/nodes/n2/fence", "DELETE /v1/nodes/n2/fence"]
    assert engine.store.reverts(ticket_id=ticket.id)[0].status == "done"


def test_a_revert_its_guard_refuses_is_given_up_and_said(engine: Engine, server: JsonServer) -> None:
    engine.tick()
    ticket = engine.only_ticket()
    # Someone lifted the fence by hand already: unfence_node's own guard refuses.
    server.set("/v1/nodes", nodes(up=("n1", "n2")))
    engine.tick(START + 1)
    engine.tick(START + 2)
    assert requests(server) == ["POST /v1/nodes/n2/fence"]
    [refused] = [p for p in engine.proposals(ticket.id) if p.source == "revert"]
    assert (refused.status, refused.gate) == ("refused", "guard")
    [given_up] = engine.events(ticket.id, "revert_given_up")
    assert given_up.data["reason"].startswith("refused by gate guard: the guard of unfence_node")
    assert engine.store.reverts(ticket_id=ticket.id)[0].status == "given_up"


def test_recovery_credits_the_action_only_when_its_effect_is_confirmed(engine: Engine, server: JsonServer) -> None:
    engine.tick()
    first = engine.only_ticket()
    # The node comes back by itself while the API shows no fence: held again after fence_node,
    # but its effect was never seen, so it is not credited.
    server.set("/v1/nodes", nodes(up=("n1", "n2")))
    engine.tick(START + 1)
    assert engine.ticket(first.id).status == "resolved"
    assert engine.events(first.id, "verified") == []
    [recovered] = engine.events(first.id, "recovered")
    assert recovered.data == {"proposal": 1, "action": "fence_node", "params": {"node_id": "n2"}, "effect_confirmed": False}
    # Next episode: the fence shows before the node recovers: credited.
    server.set("/v1/nodes", nodes("n2"))
    engine.tick(START + 700)  # past fence_node's cooldown
    second = engine.store.tickets(status="open")[0]
    fenced(server)
    server.set("/v1/nodes", nodes(up=("n1", "n2")))
    engine.tick(START + 701)
    [confirmed] = engine.events(second.id, "effect_confirmed")
    assert confirmed.data["expr"] == FENCED
    [verified] = engine.events(second.id, "verified")
    assert verified.data["action"] == "fence_node" and verified.data["effect_confirmed"] is True


def test_a_crash_between_resolution_and_revert_loses_nothing(tmp_path: Path, server: JsonServer) -> None:
    """A real `opctl run`, SIGKILLed after the ticket resolved while the revert waited; the next
    run picks the armed revert up from the store and runs it, once."""
    config = tmp_path / "opctl.yaml"
    config.write_text(yaml.safe_dump(revert_config(server.url, interval="200ms"), sort_keys=False))
    db = tmp_path / "state.db"
    env = {**os.environ, "API_TOKEN": SECRET}

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "engine", "run", str(config), "--json"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip

    def events(kind: str) -> list[Any]:
        if not db.exists():
            return []
        with Store(db) as store:
            return [e for e in store.events(limit=10_000) if e.kind == kind]

    first = start()
    try:
        wait_for(lambda: "POST /v1/nodes/n2/fence" in requests(server))
        fenced(server)
        server.set("/v1/nodes", nodes())  # resolves; the revert waits for the node to be up
        wait_for(lambda: events("revert_waiting"))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    server.set("/v1/nodes", nodes(up=("n1", "n2")))
    second = start()
    try:
        wait_for(lambda: events("reverted"))
    finally:
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=20)
    assert second.returncode == 0, err
    assert requests(server) == ["POST /v1/nodes/n2/fence", "DELETE /v1/nodes/n2/fence"]
    with Store(db) as store:
        [revert] = store.reverts()
        assert revert.status == "done"
    for line in out.splitlines():
        json.loads(line)

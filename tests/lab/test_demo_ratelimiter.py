"""`opctl demo configs/ratelimiter.yaml` end to end, as a real subprocess: a real lab (redis-server,
three limiter nodes, the load generator) on free ports, the real operator loop, offline diagnosis
(the runbook provider), real actions; then the audit log it leaves in the lab's state dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.store import Store
from tests.lab.demo_support import RATELIMITER, lab_env, last_json_line, opctl, recorded_pids, run_store


def timeline_kinds(stdout: str) -> list[str]:
    return [line.split()[1] for line in stdout.splitlines() if line.strip().startswith(("+", "-"))]


@pytest.mark.slow
def test_kill_node_is_detected_diagnosed_fixed_and_verified(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = opctl("demo", str(RATELIMITER), "--scenario", "kill_node", env=lab_env(RATELIMITER, state), timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    result = last_json_line(done.stdout)
    assert result["scenario"] == "kill_node" and result["ok"] is True and result["mode"] == "execute"
    assert result["actions"] == ["deregister_node"]
    # node2 is stale after 2 s without heartbeats; nodes heartbeat every 250 ms, the loop ticks every 1 s
    assert 1.5 <= result["detected_s"]  # no upper bound: a busy machine only makes it later
    assert result["detected_s"] < result["recovered_s"]
    kinds = timeline_kinds(done.stdout)
    for expected in ("inject", "DETECTED", "firing", "diagnosed", "executed", "verifying", "verified", "RECOVERED", "PASS"):
        assert expected in kinds, done.stdout
    assert kinds.index("inject") < kinds.index("DETECTED") < kinds.index("diagnosed") < kinds.index("executed") < kinds.index("RECOVERED")
    assert "lab        down (5 processes stopped)" in done.stdout
    assert recorded_pids(state) == []  # nothing left running: the next demo starts clean

    record = run_store(done.stdout, state)
    listed = opctl("tickets", "list", "--store", str(record), "--json", env=lab_env(RATELIMITER, state))
    assert [(t["invariant"], t["key"]) for t in json.loads(listed.stdout)] == [("node_heartbeat", "node2")]
    with Store(record) as store:
        [ticket] = store.tickets(limit=10)
        assert (ticket.invariant, ticket.entity_key, ticket.status) == ("node_heartbeat", "node2", "resolved")
        [execution] = store.executions(limit=10)
        assert (execution.action, execution.status, execution.request["line"]) == (
            "deregister_node", "succeeded", "DELETE /v1/nodes/node2",
        )  # fmt: skip
        assert "verified" in [e.kind for e in store.events(ticket.id)]
        assert store.mode_override() == "execute"


@pytest.mark.slow
def test_observe_mode_diagnoses_and_proposes_but_executes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = opctl("demo", str(RATELIMITER), "--scenario", "over_admission", "--mode", "observe",
                 env=lab_env(RATELIMITER, state), timeout=90)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = last_json_line(done.stdout)
    assert result == {**result, "scenario": "over_admission", "ok": True, "recovered_s": None, "actions": ["reset_key"], "mode": "observe"}
    assert result["detected_s"] is not None and result["detected_s"] > 0
    kinds = timeline_kinds(done.stdout)
    assert "diagnosed" in kinds and "proposed" in kinds and "executed" not in kinds
    with Store(run_store(done.stdout, state)) as store:
        assert store.executions(limit=10) == []
        [proposal] = store.proposals(limit=10)
        assert (proposal.action, proposal.params, proposal.status) == ("reset_key", {"policy": "default", "key": "hot-0"}, "proposed")
    assert recorded_pids(state) == []

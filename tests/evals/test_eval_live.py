"""A live-lab case end to end with the runbook: the real lab, the fault injected for real, the
engine's own diagnosis request captured at that moment, scored, recorded, and replayed offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_support import ROOT, json_lines
from tests.lab.demo_support import RATELIMITER, lab_env, opctl, recorded_pids


@pytest.mark.slow
@pytest.mark.redis
def test_kill_node_live_with_the_runbook_then_replayed(tmp_path: Path) -> None:
    env = lab_env(RATELIMITER, tmp_path / "lab")
    evals = ROOT / "subjects" / "ratelimiter" / "evals" / "live.yaml"
    record = tmp_path / "recorded"
    result = opctl("eval", str(evals), "--run", "kill_node", "--record", str(record), "--json", env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    case, totals = json_lines(result.stdout)
    assert case["case"] == "ratelimiter/live/kill_node" and case["kind"] == "live"
    assert (totals["accuracy"], totals["action_accuracy"], totals["errors"]) == (1.0, 1.0, 0), case
    assert recorded_pids(tmp_path / "lab") == []  # the lab is down again
    saved = json.loads((record / "ratelimiter" / "live" / "kill_node" / "1.json").read_text())
    moment = saved["moment"]
    assert moment["invariant"] == "node_heartbeat" and moment["key"] == "node2" and moment["firing"] is True
    assert any(n["id"] == "node2" and n["state"] == "down" for n in moment["observations"]["registry"])
    assert moment["mode"] == "execute"  # the prompt says what production would say
    # the gate's guard re-ran the registry for real
    assert [o["name"] for o in saved["observations"]] == ["registry"]
    replayed = opctl("eval", str(evals), "--run", "kill_node", "--provider", "replay", "--from", str(record), "--json",
                     env=env, timeout=120)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    again, again_totals = json_lines(replayed.stdout)
    assert again_totals["accuracy"] == 1.0 and again["latency_mean_s"] == case["latency_mean_s"]

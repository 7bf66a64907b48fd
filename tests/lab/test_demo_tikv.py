"""`opctl demo configs/tikv.yaml` end to end, as a real subprocess: the PD simulator and a real
Prometheus as lab processes on free ports, the same engine, TiKV only in YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store import Store
from tests.lab.demo_support import TIKV, lab_env, last_json_line, opctl, recorded_pids


@pytest.mark.slow
def test_store_down_is_fenced_then_recovers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = opctl("demo", str(TIKV), "--scenario", "store_down", env=lab_env(TIKV, state), timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    result = last_json_line(done.stdout)
    assert result["ok"] is True and result["actions"] == ["add_evict_leader"]
    # PD calls a silent store Disconnected after its 20 s window, on the wall clock; the store
    # comes back after 40 s.
    assert result["detected_s"] >= 20.0
    assert result["recovered_s"] > 40.0
    with Store(state / "demo.db") as store:
        [execution] = store.executions(limit=10)
        assert (execution.action, execution.status, execution.request["line"]) == (
            "add_evict_leader", "succeeded", "POST /pd/api/v1/schedulers",
        )  # fmt: skip
        ticket = next(t for t in store.tickets(limit=10) if t.invariant == "store_up")
        assert (ticket.entity_key, ticket.status) == ("3", "resolved")
    assert recorded_pids(state) == []

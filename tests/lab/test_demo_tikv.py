"""`opctl demo configs/tikv.yaml` end to end, as a real subprocess: the PD + Prometheus simulator as
a lab process on free ports, the same engine, TiKV only in YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store import Store
from tests.lab.demo_support import TIKV, lab_env, last_json_line, opctl, recorded_pids, run_store


@pytest.mark.slow
def test_store_down_is_fenced_then_recovers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = opctl("demo", str(TIKV), "--scenario", "store_down", env=lab_env(TIKV, state), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = last_json_line(done.stdout)
    assert result["ok"] is True and result["actions"] == ["add_evict_leader"]
    # PD's 20 s disconnect window runs 4x faster in the lab: Disconnected after ~5 s
    assert 2.0 <= result["detected_s"] <= 10.0
    assert 20.0 < result["recovered_s"] < 60.0  # the store comes back after 20 s
    with Store(run_store(done.stdout, state)) as store:
        [execution] = store.executions(limit=10)
        assert (execution.action, execution.status, execution.request["line"]) == (
            "add_evict_leader", "succeeded", "POST /pd/api/v1/schedulers",
        )  # fmt: skip
        ticket = next(t for t in store.tickets(limit=10) if t.invariant == "store_up")
        assert (ticket.entity_key, ticket.status) == ("3", "resolved")
    assert recorded_pids(state) == []

"""`opctl demo configs/tikv.yaml` end to end, as a real subprocess: the PD simulator and a real
Prometheus as lab processes on free ports, the same engine, TiKV only in YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store import Store
from tests.lab.demo_support import TIKV, lab_env, last_json_line, opctl, recorded_pids, run_store


@pytest.mark.slow
def test_store_down_is_fenced_recovers_and_the_fence_is_removed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = opctl("demo", str(TIKV), "--scenario", "store_down", env=lab_env(TIKV, state), timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    result = last_json_line(done.stdout)
    # The fence, then its revert: the scenario's check saw no evict-leader scheduler left.
    assert result["ok"] is True and result["actions"] == ["add_evict_leader", "remove_evict_leader"]
    # PD calls a store Disconnected 20 s after its last heartbeat (every 10 s), on the wall clock,
    # so 10 to 20 s after it stopped; the store comes back after 40 s.
    assert result["detected_s"] >= 10.0
    assert result["recovered_s"] > 40.0
    with Store(run_store(done.stdout, state)) as store:
        fence, unfence = reversed(store.executions(limit=10))
        assert (fence.action, fence.status, fence.request["line"]) == ("add_evict_leader", "succeeded", "POST /pd/api/v1/schedulers")
        assert (unfence.action, unfence.status, unfence.request["line"]) == (
            "remove_evict_leader", "succeeded", "DELETE /pd/api/v1/schedulers/evict-leader-scheduler-3",
        )  # fmt: skip
        [ticket] = store.tickets(limit=10)  # no second incident (leader_balance) opened
        assert (ticket.invariant, ticket.entity_key, ticket.status) == ("store_up", "3", "resolved")
        assert fence.ticket_id == unfence.ticket_id == ticket.id
        assert [r.status for r in store.reverts()] == ["done"]
    assert "reverted" in done.stdout
    assert recorded_pids(state) == []

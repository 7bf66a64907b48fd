"""The shipped ratelimiter lab, for real: redis-server, three limiter nodes and the load generator.

Runs on free ports through the lab's environment overrides, with its state in tmp_path.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from engine.lab import supervisor
from engine.lab.chaos import run_steps
from tests.ports import free_port
from engine.lab.spec import LabSpec, load_lab

LAB = Path(__file__).resolve().parents[2] / "subjects" / "ratelimiter" / "lab.yaml"


def lab_on_free_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LabSpec:
    env = {
        "OPCTL_LAB_STATE_DIR": str(tmp_path / "state"),
        "OPCTL_LAB_REDIS_PORT": str(free_port()),
        "OPCTL_LAB_RL_PORT_1": str(free_port()),
        "OPCTL_LAB_RL_PORT_2": str(free_port()),
        "OPCTL_LAB_RL_PORT_3": str(free_port()),
        "OPCTL_LAB_LOAD_REPORT_S": "1",
        "OPCTL_LAB_DEFAULT_LIMIT": "5",  # denials within a second or two
        "RATELIMITER_TOKEN": "t0k",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_lab(LAB)


def progress_lines(spec: LabSpec) -> list[dict[str, object]]:
    text = spec.log_path("loadgen").read_text()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def wait_for(condition, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.slow
def test_ratelimiter_lab_up_load_chaos_down_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = lab_on_free_ports(tmp_path, monkeypatch)
    exports = spec.lab.exports
    auth = {"Authorization": "Bearer t0k"}
    http = httpx.Client()  # one client (one TLS context) for the whole test, not one per poll
    try:
        status = supervisor.up(spec)
        assert status.healthy
        assert status.process("node1").endpoint == exports["RATELIMITER_URL_1"]
        nodes = http.get(f"{exports['RATELIMITER_URL_2']}/v1/nodes", headers=auth).json()["nodes"]
        assert sorted((n["id"], n["state"]) for n in nodes) == [("node1", "up"), ("node2", "up"), ("node3", "up")]

        # Realistic load: allowed and denied decisions, spread over the three nodes, no errors.
        assert wait_for(lambda: any(
            line.get("allowed", 0) > 0 and line.get("denied", 0) > 0 for line in progress_lines(spec)  # type: ignore[operator]
        )), spec.log_path("loadgen").read_text()[-2000:]
        last = progress_lines(spec)[-1]
        assert last["errors"] == 0 and len(last["targets"]) == 3  # type: ignore[arg-type]

        # The over_admission scenario corrupts the real counter of a real hot key.
        scenario = spec.scenario("over_admission")
        results = asyncio.run(run_steps(scenario.inject, spec))
        assert [r.ok for r in results] == [True, True], [r.detail for r in results]

        def hot_key() -> list[dict[str, object]]:
            over = http.get(f"{exports['RATELIMITER_URL_1']}/v1/keys", params={"over_limit": "true"}, headers=auth).json()
            return [k for k in over["keys"] if k["key"] == "hot-0"]

        # the over-limit index learns of the key at its next decision (the load keeps hitting it)
        assert wait_for(hot_key)
        hot = hot_key()
        assert hot and hot[0]["used"] > hot[0]["limit"] == 5  # type: ignore[operator]

        # kill_node: node2 goes stale then down in the registry within seconds.
        assert all(r.ok for r in asyncio.run(run_steps(spec.scenario("kill_node").inject, spec)))

        def node2_state() -> str:
            listed = http.get(f"{exports['RATELIMITER_URL_1']}/v1/nodes", headers=auth).json()["nodes"]
            return next(n["state"] for n in listed if n["id"] == "node2")

        assert wait_for(lambda: node2_state() == "down", timeout=10)
        assert not supervisor.status(spec).process("node2").running
    finally:
        http.close()
        supervisor.down(spec)
    assert not supervisor.status(spec).running
    summary = progress_lines(spec)[-1]
    assert summary["event"] == "summary"  # the load generator reported on SIGTERM
    try:
        assert supervisor.up(spec).healthy  # again: no leftovers, same ports
    finally:
        assert supervisor.down(spec) == ["loadgen", "node3", "node2", "node1", "redis"]

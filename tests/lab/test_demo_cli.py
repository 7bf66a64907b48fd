"""`opctl lab up|status|down --json`, `opctl demo --list`, and how the demo fails: as real
subprocesses, on the TiKV lab (the simulator and a real Prometheus, up in about a second) on free ports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.lab.demo_support import RATELIMITER, ROOT, TIKV, lab_env, last_json_line, opctl, pid_alive, recorded_pids


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (RATELIMITER, {
            "kill_node": "node_heartbeat (then deregister_node)",
            "redis_stall": "node_redis_reachable",
            "policy_drift": "policy_version_agrees (then reload_policies)",
            "over_admission": "no_over_admission (then reset_key)",
            "memory_pressure": "redis_memory_headroom (then raise_redis_maxmemory)",
        }),
        (TIKV, {
            "store_down": "store_up (then add_evict_leader)",
            "disk_full": "store_space",
            "hot_store": "store_latency_p99 (then add_evict_leader)",
            "leader_imbalance": "leader_balance (then remove_evict_leader)",
        }),
    ],
)  # fmt: skip
def test_list_names_every_scenario_and_what_it_must_fire(tmp_path: Path, config: Path, expected: dict[str, str]) -> None:
    done = opctl("demo", str(config), "--list", env=lab_env(config, tmp_path / "state"))
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0]: line.split(" fires ", 1)[1] for line in done.stdout.splitlines() if " fires " in line}
    assert listed == expected
    assert not (tmp_path / "state").exists()  # listing starts nothing


@pytest.mark.slow
def test_lab_up_status_down_json_and_a_demo_refused_while_it_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = lab_env(TIKV, state)
    up = opctl("lab", "up", str(TIKV), "--json", env=env)
    try:
        assert up.returncode == 0, up.stderr
        status = json.loads(up.stdout)
        pd1 = f"http://127.0.0.1:{env['OPCTL_LAB_PD_PORT_1']}"
        assert status["healthy"] and status["state_dir"] == str(state)
        prometheus = f"http://127.0.0.1:{env['OPCTL_LAB_PROM_PORT']}"
        assert status["endpoints"] == {"pdsim": pd1, "prometheus": prometheus}
        assert status["exports"] == {
            "PD_URL_1": pd1,
            "PD_URL_2": f"http://127.0.0.1:{env['OPCTL_LAB_PD_PORT_2']}",
            "PD_URL_3": f"http://127.0.0.1:{env['OPCTL_LAB_PD_PORT_3']}",
            "PROMETHEUS_URL": prometheus,
        }
        assert httpx.get(f"{pd1}/pd/api/v1/stores").json()["count"] == 3
        # Ready means scraped: Prometheus already holds every TiKV's series.
        up = httpx.get(f"{prometheus}/api/v1/query", params={"query": 'up{job="tikv"} == 1'}).json()
        assert len(up["data"]["result"]) == 3
        pids = recorded_pids(state)
        assert len(pids) == 2 and all(pid_alive(pid) for pid in pids)

        again = opctl("lab", "status", str(TIKV), "--json", env=env)
        assert again.returncode == 0 and [p["pid"] for p in json.loads(again.stdout)["processes"]] == pids

        # A second `up`, and a demo, refuse while the lab runs; the demo still ends with its result line.
        twice = opctl("lab", "up", str(TIKV), env=env)
        assert twice.returncode == 1 and "already running" in twice.stderr and "Traceback" not in twice.stderr
        demo = opctl("demo", str(TIKV), "--scenario", "disk_full", env=env)
        assert demo.returncode == 1 and "already running" in demo.stderr and "Traceback" not in demo.stderr
        assert last_json_line(demo.stdout) == {
            "scenario": "disk_full", "ok": False, "detected_s": None, "recovered_s": None, "actions": [], "mode": "execute",
            "tickets_opened": 0, "diagnoses": 0,
        }  # fmt: skip
        assert all(pid_alive(pid) for pid in pids)  # the refused demo did not touch the running lab
    finally:
        down = opctl("lab", "down", str(TIKV), "--json", env=env)
    assert down.returncode == 0 and json.loads(down.stdout) == {"stopped": ["prometheus", "pdsim"]}
    assert not any(pid_alive(pid) for pid in pids) and not (state / "lab.json").exists()
    assert json.loads(opctl("lab", "down", str(TIKV), "--json", env=env).stdout) == {"stopped": []}  # harmless twice
    after = json.loads(opctl("lab", "status", str(TIKV), "--json", env=env).stdout)
    assert not after["running"] and [p["pid"] for p in after["processes"]] == [None, None]


def test_unknown_scenario_and_missing_scenario_are_clear_errors(tmp_path: Path) -> None:
    env = lab_env(RATELIMITER, tmp_path / "state")
    unknown = opctl("demo", str(RATELIMITER), "--scenario", "nope", env=env)
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert "has no scenario 'nope'; known: kill_node, redis_stall, policy_drift, over_admission, memory_pressure" in unknown.stderr
    missing = opctl("demo", str(RATELIMITER), env=env)
    assert missing.returncode == 2 and "--scenario NAME" in missing.stderr
    assert not (tmp_path / "state" / "lab.json").exists()


def test_a_config_without_a_lab_is_named(tmp_path: Path) -> None:
    config = tmp_path / "nolab.yaml"
    config.write_text(TIKV.read_text().replace("lab: ../subjects/tikv/lab.yaml", "").replace("../subjects/", f"{ROOT}/subjects/"))
    # its context and prompts are the shipped ones, outside tmp_path: named absolutely, allowed
    done = opctl("--allow-outside", "lab", "status", str(config), env=lab_env(TIKV, tmp_path / "state"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{config} declares no lab; add `lab: <path to a lab file>`" in done.stderr


def test_an_interrupted_demo_still_brings_the_lab_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = lab_env(TIKV, state)
    demo = subprocess.Popen(
        [sys.executable, "-m", "engine", "demo", str(TIKV), "--scenario", "store_down"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pids: list[int] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if not pids:
                pids = recorded_pids(state)
            if " inject " in line:  # the fault is in; stop the demo like Ctrl-C would
                break
        assert pids and all(pid_alive(p) for p in pids)
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            opctl("lab", "down", str(TIKV), env=env)
    assert demo.returncode == 1
    lines = rest.strip().splitlines()
    assert any("interrupted; bringing the lab down" in line for line in lines), rest
    assert last_json_line(rest)["ok"] is False
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in pids) and not (state / "lab.json").exists()

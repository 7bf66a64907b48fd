"""A lab without processes plays its scenarios against a service already running (started here
by the test, as a user would), and `wait_until: {expr}` waits on the config's own observations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from engine.lab import supervisor
from engine.lab.demo import lab_of
from tests.lab.demo_support import ROOT, last_json_line, opctl, run_store
from tests.ports import free_port
from tests.waiting import wait_for

BEEHIVE = ROOT / "examples" / "beehive"


@pytest.mark.slow
def test_a_demo_against_a_running_hive(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hive = subprocess.Popen([sys.executable, str(BEEHIVE / "beehive.py"), "--port", str(port), "--token", "hive-token"])
    try:
        wait_for(lambda: _answers(f"{url}/health"))
        state = tmp_path / "state"
        env = {**os.environ, "BEEHIVE_URL": url, "OPCTL_LAB_STATE_DIR": str(state), "BEEHIVE_STORE": str(tmp_path / "b.db")}
        _, spec = lab_of(BEEHIVE / "beehive.yaml", env, lab=BEEHIVE / "running.yaml")
        assert spec.lab.processes == [] and supervisor.up(spec, env=env).healthy  # nothing to start
        done = opctl("demo", str(BEEHIVE / "beehive.yaml"), "--lab", str(BEEHIVE / "running.yaml"), "--scenario", "stuck_bee",
                     env=env, timeout=90)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "condition met: hive.bees.size() >= 2 -> True" in done.stdout
        result = last_json_line(done.stdout)
        assert (result["ok"], result["actions"]) == (True, ["restart_bee"])
        assert run_store(done.stdout, state).exists()
        assert hive.poll() is None  # the demo stopped nothing it did not start
    finally:
        hive.terminate()
        hive.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False

"""Running `opctl lab` / `opctl demo` as real subprocesses on free ports, state in tmp_path.

Each lab reads its ports and state dir from environment overrides (see the lab files); the
operator config then reaches the lab through the lab's `exports`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
RATELIMITER = ROOT / "configs" / "ratelimiter.yaml"
TIKV = ROOT / "configs" / "tikv.yaml"
RESULT_KEYS = {"scenario", "ok", "detected_s", "recovered_s", "actions", "mode", "tickets_opened", "diagnoses"}


def lab_env(config: Path, state_dir: Path) -> dict[str, str]:
    """The environment that puts the config's lab on free ports with its state in `state_dir`."""
    names = {
        RATELIMITER: ["OPCTL_LAB_REDIS_PORT", "OPCTL_LAB_RL_PORT_1", "OPCTL_LAB_RL_PORT_2", "OPCTL_LAB_RL_PORT_3"],
        TIKV: [
            "OPCTL_LAB_PD_PORT_1", "OPCTL_LAB_PD_PORT_2", "OPCTL_LAB_PD_PORT_3",
            "OPCTL_LAB_TIKV_PORT_1", "OPCTL_LAB_TIKV_PORT_2", "OPCTL_LAB_TIKV_PORT_3", "OPCTL_LAB_PROM_PORT",
        ],  # fmt: skip
    }[config]
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}  # offline: the runbook provider
    env.update({name: str(free_port()) for name in names})
    env["OPCTL_LAB_STATE_DIR"] = str(state_dir)
    return env


def opctl(*args: str, env: dict[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def last_json_line(stdout: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    assert lines, "no output"
    result = json.loads(lines[-1])
    assert isinstance(result, dict) and set(result) == RESULT_KEYS, lines[-1]
    return result


def run_store(stdout: str, state_dir: Path) -> Path:
    """The store of one demo run, from the inspection command it printed just before its result
    line: a store of its own under the lab's state dir."""
    *_, command, _result = stdout.strip().splitlines()
    prefix = "inspect this run: opctl tickets list --store "
    assert command.startswith(prefix), command
    path = Path(command.removeprefix(prefix))
    path = path if path.is_absolute() else ROOT / path
    assert path.parent == state_dir / "demos" and path.exists(), path
    return path


def pid_alive(pid: int) -> bool:
    """A live process has this pid (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def recorded_pids(state_dir: Path) -> list[int]:
    path = state_dir / "lab.json"
    if not path.exists():
        return []
    return [p["pid"] for p in json.loads(path.read_text())["processes"]]

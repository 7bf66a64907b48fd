"""A small lab of real processes for the lab tests: a redis-server and two tiny HTTP processes.

`small_lab(tmp_path)` writes the lab file on free ports (through environment overrides, as the
real lab does) and returns the loaded spec; the test owns bringing it down.
"""

from __future__ import annotations

from pathlib import Path

from tests.ports import free_port
from engine.lab.spec import LabSpec, load_lab

HERE = Path(__file__).parent

SMALL_LAB = """\
version: 1
name: small
state_dir: ${STATE}
cwd: .
env:
  TINY_ECHO: lab-wide
exports:
  WEB_URL: http://127.0.0.1:${WEB_PORT}
processes:
  - name: store
    redis: {port: "${REDIS_PORT}", args: [--maxmemory, 32mb]}
  - name: web
    command: ["{python}", tiny_http.py, "${WEB_PORT}"]
    ready: {http: "http://127.0.0.1:${WEB_PORT}/health", timeout: 10s}
    after: [store]
  - name: logger
    command: ["{python}", tiny_http.py, "${LOG_PORT}"]
    ready: {log: "tiny listening on \\\\d+", timeout: 10s}
    after: [web]
"""


def write_small_lab(tmp_path: Path, extra: str = "") -> tuple[Path, dict[str, str]]:
    """The lab file (next to tiny_http.py's copy) and the env that places it on free ports."""
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir(exist_ok=True)
    (lab_dir / "tiny_http.py").write_text((HERE / "tiny_http.py").read_text())
    path = lab_dir / "lab.yaml"
    path.write_text(SMALL_LAB + extra)
    env = {
        "STATE": str(tmp_path / "state"),
        "REDIS_PORT": str(free_port()),
        "WEB_PORT": str(free_port()),
        "LOG_PORT": str(free_port()),
    }
    return path, env


def small_lab(tmp_path: Path, extra: str = "") -> LabSpec:
    path, env = write_small_lab(tmp_path, extra)
    return load_lab(path, env)

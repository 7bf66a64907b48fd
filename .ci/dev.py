#!/usr/bin/env python3
"""Set up the project's virtual environment and run its main job or its tests.

Needs only Python 3.11+:

    python3 .ci/dev.py demo     # set up .venv, then run the main job: the rate limiter demo
    python3 .ci/dev.py test     # set up .venv, then run the whole test suite

`demo` plays `opctl demo configs/ratelimiter.yaml --scenario kill_node` on the local lab (a real
Redis, three limiter nodes and a load generator on loopback); extra arguments replace the
defaults, e.g. `python3 .ci/dev.py demo --scenario policy_drift --mode observe`.

The venv is (re)installed when pyproject.toml changed since the last install.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".opctl-installed"


def ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"opctl needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("installing opctl and its test tools into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def run(args: list[str]) -> int:
    return subprocess.run(args, cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    ensure_venv()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if argv[0] == "demo":
        return run([str(BIN / "opctl"), "demo", "configs/ratelimiter.yaml", *(argv[1:] or ["--scenario", "kill_node"])])
    code = run([str(BIN / "python"), "-m", "pytest", *argv[1:]])
    if code == 5:  # pytest: no tests were collected; a test run that ran nothing is a failure
        print("error: no tests ran", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Set up the project's virtual environment and run its main job or its tests.

Needs only Python 3.11+:

    python3 .ci/dev.py demo     # set up .venv (runtime dependencies), then the rate limiter demo
    python3 .ci/dev.py test     # set up .venv with the test tools, then the whole test suite

`demo` plays `opctl demo configs/ratelimiter.yaml --scenario kill_node --mode execute` on the
local lab (a real Redis, three limiter nodes and a load generator on loopback); extra arguments
are added to those and replace only what they name, e.g. `python3 .ci/dev.py demo --mode
observe` or `python3 .ci/dev.py demo --scenario policy_drift`.

`demo` installs opctl's runtime dependencies only; `test` adds the `dev` extra (pytest, ...).
Both install opctl editable, so a changed checkout runs as it is. The venv is (re)installed when
pyproject.toml changed since the last install, or when `test` needs the test tools a `demo`
install left out. On a terminal pip shows its progress.
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
DEMO_DEFAULTS = {"--scenario": "kill_node", "--mode": "execute"}


def ensure_venv(dev: bool = True) -> None:
    """A .venv with opctl installed: with the test tools (`dev`), or its runtime dependencies only."""
    if sys.version_info < (3, 11):
        sys.exit(f"opctl needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    installed, _, kind = (STAMP.read_text().partition(" ") if STAMP.exists() else ("", "", ""))
    if installed == wanted and (kind == "dev" or not dev):
        return
    what = "opctl and its test tools" if dev else "opctl (runtime dependencies only)"
    print(f"installing {what} into .venv (pip {'shows its progress' if sys.stdout.isatty() else 'is quiet when not on a terminal'})", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    if not sys.stdout.isatty():
        pip.append("-q")
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]" if dev else str(ROOT)], check=True)
    STAMP.write_text(f"{wanted} {'dev' if dev else 'runtime'}")


def demo_args(extra: list[str]) -> list[str]:
    """The demo's defaults, each kept unless `extra` names that option."""
    named = {arg.split("=", 1)[0] for arg in extra if arg.startswith("--")}
    defaults = [part for option, value in DEMO_DEFAULTS.items() if option not in named for part in (option, value)]
    return [*defaults, *extra]


def run(args: list[str]) -> int:
    return subprocess.run(args, cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    ensure_venv(dev=argv[0] == "test")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if argv[0] == "demo":
        return run([str(BIN / "opctl"), "demo", "configs/ratelimiter.yaml", *demo_args(argv[1:])])
    code = run([str(BIN / "python"), "-m", "pytest", *argv[1:]])
    if code == 5:  # pytest: no tests were collected; a test run that ran nothing is a failure
        print("error: no tests ran", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

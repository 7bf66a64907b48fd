#!/usr/bin/env python3
"""Set up the project's virtual environment and run its main job or its tests.

Needs only Python 3.11+:

    python3 .ci/dev.py demo     # set up .venv (runtime dependencies), then the rate limiter demo
    python3 .ci/dev.py test     # set up .venv with the test tools, then the whole test suite

`demo` plays `opctl demo configs/ratelimiter.yaml --scenario kill_node --mode execute` on the
local lab (a real Redis, three limiter nodes and a load generator on loopback); extra arguments
are added to those and replace only what they name, e.g. `python3 .ci/dev.py demo --mode
observe` or `python3 .ci/dev.py demo --scenario policy_drift`.

`demo` installs opctl with its runtime dependencies only (`pip install .`); `test` installs it
editable with the `dev` extra (pytest, ...), which serves the demo too. The venv is installed
again when pyproject.toml changed since, when `test` needs the test tools a `demo` install left
out, or when a plain install's sources changed. On a terminal pip shows its progress.
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
    """A .venv with opctl installed: editable with the test tools (`dev`), or a plain install of
    its runtime dependencies only (what the demo needs)."""
    if sys.version_info < (3, 11):
        sys.exit(f"opctl needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    installed, _, kind = (STAMP.read_text().partition(" ") if STAMP.exists() else ("", "", ""))
    if kind == "dev" and installed == _fingerprint(dev=True):
        return  # an editable install with the test tools serves the demo too
    if not dev and kind == "runtime" and installed == _fingerprint(dev=False):
        return
    what = "opctl and its test tools" if dev else "opctl (runtime dependencies only)"
    print(f"installing {what} into .venv (pip {'shows its progress' if sys.stdout.isatty() else 'is quiet when not on a terminal'})", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    if not sys.stdout.isatty():
        pip.append("-q")
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"] if dev else [*pip, str(ROOT)], check=True)
    STAMP.write_text(f"{_fingerprint(dev=dev)} {'dev' if dev else 'runtime'}")


def _fingerprint(*, dev: bool) -> str:
    """What an install depends on: pyproject.toml, and for a plain (non-editable) install the
    sources it copied, so a changed checkout is installed again before it runs."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    if not dev:
        for package in ("engine", "ratelimiter_service"):
            for path in sorted((ROOT / package).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    return digest.hexdigest()


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

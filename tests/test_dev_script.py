"""`.ci/dev.py demo` keeps its defaults (kill_node, execute) unless the user names that option:
`python3 .ci/dev.py demo --mode observe` still plays kill_node."""

from __future__ import annotations

import runpy
from pathlib import Path

DEV = runpy.run_path(str(Path(__file__).resolve().parents[1] / ".ci" / "dev.py"))


def test_extra_arguments_replace_only_what_they_name() -> None:
    demo_args = DEV["demo_args"]
    assert demo_args([]) == ["--scenario", "kill_node", "--mode", "execute"]
    assert demo_args(["--mode", "observe"]) == ["--scenario", "kill_node", "--mode", "observe"]
    assert demo_args(["--scenario=policy_drift"]) == ["--mode", "execute", "--scenario=policy_drift"]
    assert demo_args(["--scenario", "redis_stall", "--mode", "approve", "--interval", "2s"]) == [
        "--scenario", "redis_stall", "--mode", "approve", "--interval", "2s",
    ]  # fmt: skip

"""Prometheus' own checker, `promtool` (Debian package `prometheus`, which .ci/run installs).

    check_config(path)              `promtool check config`: the test fails with promtool's words
    metrics_lint(text)              `promtool check metrics`: the exposition must parse; its lint findings
    expression_problems(exprs, d)   every PromQL expression parsed by Prometheus' own parser
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

PROMTOOL = shutil.which("promtool")
requires_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package `prometheus`; .ci/run installs it)"
)
# Grafana's built-in interval variables, replaced as Grafana does before it sends a query.
GRAFANA_INTERVALS = re.compile(r"\$(?:__rate_interval|__interval|__range)\b|\$\{(?:__rate_interval|__interval|__range)\}")


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60)


def check_config(path: Path) -> None:
    done = promtool("check", "config", str(path))
    assert done.returncode == 0, f"promtool check config {path}:\n{done.stdout}{done.stderr}"


def metrics_lint(text: str) -> list[str]:
    """promtool's lint findings for an exposition (exit 3); the test fails if it does not parse (exit 1)."""
    done = promtool("check", "metrics", stdin=text)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode in (0, 3), f"promtool check metrics could not parse the exposition:\n{output}"
    return sorted(line.strip() for line in output.splitlines() if line.strip() and "error while linting" not in line)


def expression_problems(expressions: Mapping[str, str], directory: Path) -> list[str]:
    """Each expression (by where it comes from) as a recording rule through `promtool check rules`:
    Prometheus' parser, the same one a query meets. Returns the problems, each naming its place."""
    names = list(expressions)
    rules = [
        {"record": f"opctl_check_{i}", "expr": GRAFANA_INTERVALS.sub("1m", expressions[where])}
        for i, where in enumerate(names)
    ]
    path = directory / "expressions.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}, sort_keys=False))
    done = promtool("check", "rules", str(path))
    if done.returncode == 0:
        return []
    problems = []
    for line in (done.stdout + done.stderr).splitlines():
        rule = re.search(r'rule (\d+), "opctl_check_\d+": (.*)', line)
        if rule:
            problems.append(f"{names[int(rule[1]) - 1]}: {rule[2]}")
    return problems or [(done.stdout + done.stderr).strip()]

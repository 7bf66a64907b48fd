"""Support for the eval tests: the shipped paths, an eval file written into tmp_path, and the
CLI run in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from engine.cli import main

ROOT = Path(__file__).resolve().parents[2]
RATELIMITER = ROOT / "configs" / "ratelimiter.yaml"
FIXTURES = ROOT / "subjects" / "ratelimiter" / "tests" / "fixtures"
BASELINES = ROOT / "tests" / "evals" / "baselines"


def healthy_fixtures(**changes: Any) -> dict[str, Any]:
    fixtures: dict[str, Any] = {
        "registry": [{"from": "0s", "json_file": str(FIXTURES / "registry_all_up.json")},
                     {"from": "2s", "json_file": str(FIXTURES / "registry_n2_down.json")}],
        "over_limit": {"value": []},
        "ready": {"json_file": str(FIXTURES / "ready_all_200.json")},
        "node_metrics": {"json_file": str(FIXTURES / "node_metrics_healthy.json")},
        "redis_ping": {"value": "PONG"},
        "redis_memory": {"json_file": str(FIXTURES / "redis_memory_roomy.json")},
        "redis_stats": {"value": {"evicted_keys": 0}},
    }
    fixtures.update(changes)
    return fixtures


def node_down_case(name: str = "node_down", **expect: Any) -> dict[str, Any]:
    return {
        "name": name,
        "frozen": {"ticket": {"invariant": "node_heartbeat", "key": "n2"}, "tick": "2s", "fixtures": healthy_fixtures()},
        "expect": {"root_cause": [{"any": ["n2"]}], "actions": [{"action": "deregister_node", "params": {"node_id": "n2"}}], **expect},
    }


def write_evals(directory: Path, cases: list[dict[str, Any]], config: Path = RATELIMITER, name: str = "cases.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump({"config": str(config), "evals": cases}, sort_keys=False))
    return path


def opctl(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"ANTHROPIC_API_KEY": ""}, catch_exceptions=False)


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]

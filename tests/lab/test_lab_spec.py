"""Lab files: problems located at file:line:col, and the shipped ratelimiter lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config.validate import load_config
from engine.errors import ConfigError
from engine.lab.spec import check_expectations, load_lab, validate_lab
from tests.lab.lab_support import write_small_lab

REPO = Path(__file__).resolve().parents[2]
RATELIMITER_LAB = REPO / "subjects" / "ratelimiter" / "lab.yaml"


def problems_of(tmp_path: Path, extra: str) -> list[str]:
    path, env = write_small_lab(tmp_path, extra)
    return [f"{p.line}:{p.column} {p.message} (at {'.'.join(map(str, p.path))})" for p in validate_lab(path, env)]


def test_small_lab_is_valid(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "") == []


def test_unknown_key_in_a_step_is_located(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        "scenarios:\n  - name: s\n    inject:\n      - signal: {process: web, signal: KILL, force: true}\n"
        "    expect: {fires: x}\n",
    )
    assert found == ["23:46 unknown key 'force'; allowed keys here: process, signal (at scenarios.0.inject.0.signal.force)"]


def test_a_step_needs_exactly_one_kind(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        "scenarios:\n  - name: s\n    inject:\n      - {wait: 1s, signal: {process: web, signal: KILL}}\n"
        "      - {explode: now}\n    expect: {fires: x}\n",
    )
    assert found[0].startswith("23:9 a step is a mapping with exactly one of: signal, restart, redis, http, wait, wait_until (found signal, wait)")
    assert found[1].startswith("24:9 a step is a mapping with exactly one of")


def test_semantic_problems(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        "  - name: web\n    command: [x]\n    after: [later, web]\n  - name: later\n    command: [y]\n"
        "scenarios:\n  - name: s\n    inject:\n      - signal: {process: ghost, signal: KILL}\n"
        "      - redis: {process: web, command: [PING]}\n    expect: {fires: x}\n",
    )
    assert "20:11 process name 'web' is used twice (first at processes.1) (at processes.3.name)" in found
    assert any("starts after 'later': processes start in the order listed; move it above" in f for f in found)
    assert any("process 'web' cannot start after itself" in f for f in found)
    assert any("step names process 'ghost', which the lab does not declare" in f for f in found)
    assert any("a `redis` step needs a redis process; 'web' is a command" in f for f in found)


def test_bad_values_are_explained(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        "  - name: extra\n    command: [x]\n    ready: {http: 'localhost/health', tcp: 'a:1'}\n"
        "scenarios:\n  - name: s\n    inject: [{signal: {process: web, signal: NUKE}}, {wait: soon}]\n    expect: {fires: x}\n",
    )
    text = "\n".join(found)
    assert "`http` must be a URL with an explicit port" in text
    assert "'signal' must be one of" in text and "NUKE" in text
    assert "'soon' is not a duration" in text


def test_load_lab_raises_a_listing(tmp_path: Path) -> None:
    path, env = write_small_lab(tmp_path, "bogus: 1\n")
    with pytest.raises(ConfigError, match=r"is not a valid lab file \(1 problem\(s\)\):\n.*lab.yaml:\d+:1: error: unknown key 'bogus'"):
        load_lab(path, env)


def test_shipped_ratelimiter_lab_matches_its_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPCTL_LAB_STATE_DIR", "OPCTL_LAB_REDIS_PORT", "OPCTL_LAB_RL_PORT_1"):
        monkeypatch.delenv(var, raising=False)
    assert validate_lab(RATELIMITER_LAB) == []
    spec = load_lab(RATELIMITER_LAB)
    assert spec.state_dir == REPO / ".opctl" / "lab" / "ratelimiter"
    assert spec.cwd_of(spec.process("node1")) == REPO
    assert [p.name for p in spec.lab.processes] == ["redis", "node1", "node2", "node3", "loadgen"]
    assert {s.name for s in spec.lab.scenarios} == {"kill_node", "redis_stall", "policy_drift", "over_admission", "memory_pressure"}
    config = load_config(REPO / "configs" / "ratelimiter.yaml").config
    invariants = [i.name for i in config.invariants]
    actions = [a.name for a in config.actions]
    assert check_expectations(spec, invariants, actions) == []
    wrong = check_expectations(spec, ["node_heartbeat"], actions)
    assert any("scenario 'redis_stall' expects invariant 'node_redis_reachable', which the config does not declare" in p.message for p in wrong)
    assert all(p.line > 0 for p in wrong)
    # The endpoints the config reads are what the lab exports.
    exports = spec.lab.exports
    assert exports["RATELIMITER_URL_1"] == "http://127.0.0.1:18081" and exports["REDIS_URL"] == "redis://127.0.0.1:16379/0"


def test_a_wait_until_expr_must_be_cel_and_read_the_configs_observations(tmp_path: Path) -> None:
    bad_cel = problems_of(
        tmp_path, "scenarios:\n  - name: s\n    inject:\n      - wait_until: {expr: 'hive.bees.size( >= 2'}\n    expect: {fires: x}\n"
    )
    assert len(bad_cel) == 1 and "`expr` is not valid CEL" in bad_cel[0] and bad_cel[0].endswith("(at scenarios.0.inject.0.wait_until.expr)")
    both = problems_of(
        tmp_path, "scenarios:\n  - name: s\n    inject:\n      - wait_until: {expr: 'true', http: 'http://127.0.0.1:1/'}\n    expect: {fires: x}\n"
    )
    assert any("exactly one of `http`, `redis` or `expr`" in f for f in both)
    lab = tmp_path / "beehive" / "lab.yaml"
    lab.parent.mkdir()
    for name in ("beehive.yaml", "beehive.py"):
        (lab.parent / name).write_text((REPO / "examples" / "beehive" / name).read_text())
    lab.write_text((REPO / "examples" / "beehive" / "lab.yaml").read_text().replace("hive.bees.size()", "hives.bees.size()"))
    from engine.documents import validate_paths

    [problem] = validate_paths([lab.parent / "beehive.yaml"], env={})
    assert "`expr` reads hives, which the config does not observe; known: hive" in problem.message
    assert problem.path == ("scenarios", 0, "setup", 0, "wait_until", "expr") and problem.line == 22

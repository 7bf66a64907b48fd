"""`opctl test` end to end: shipped suites, a broken invariant caught with a readable diff,
strict loading (unknown names, unused fixtures, misaligned times), exit codes, --run, --junit."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine.testing import is_test_file, run_tests, validate_test_file
from tests.testing.subject_copy import copy_subject

ROOT = Path(__file__).resolve().parents[2]
SUITES = [ROOT / "subjects" / "ratelimiter" / "tests", ROOT / "subjects" / "tikv" / "tests"]


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.parent.name)
def test_shipped_suite_passes(suite: Path) -> None:
    result = run_tests([suite])
    assert result.exit_code == 0, result.report_text()
    assert len(result.results) >= 5
    assert all(r.passed for r in result.results)


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.parent.name)
def test_shipped_test_files_validate_clean(suite: Path) -> None:
    for file in sorted(suite.glob("*.yaml")):
        assert is_test_file(file)
        assert validate_test_file(file) == [], file


def test_a_broken_invariant_fails_its_suite_with_a_readable_diff(tmp_path: Path) -> None:
    config, tests = copy_subject(tmp_path, "ratelimiter")
    text = config.read_text()
    assert 'expr: item.state == "up"\n' in text
    config.write_text(text.replace('expr: item.state == "up"\n', 'expr: item.state == "up" || item.state == "down"\n'))
    result = run_tests([tests / "node_heartbeat.yaml"])
    report = result.report_text()
    assert result.exit_code == 1, report
    assert "FAIL" in report and ":: fires after 4s and opens one ticket (at 8s)" in report
    assert "invariants.node_heartbeat['n2']: expected firing, got ok" in report
    assert "tickets[0]: no ticket matches {invariant: 'node_heartbeat', key: 'n2', status: 'open'" in report
    assert "counters.tickets_opened_total: expected 1, got 0" in report
    assert "Traceback" not in report
    # the cases that do not depend on the broken part still pass
    assert any(r.passed and r.name == "quiet while every node is up" for r in result.results)


def test_partial_ticket_match_shows_the_closest_ticket_and_exact_refuses_extras(tmp_path: Path) -> None:
    _, tests = copy_subject(tmp_path, "ratelimiter")
    file = tests / "node_heartbeat.yaml"
    text = file.read_text()
    text = text.replace(
        "- {invariant: node_heartbeat, key: n2, status: resolved, severity: critical, labels: {}, held: false}",
        "- {invariant: node_heartbeat, key: n2, status: open, severity: critical}",
    )
    file.write_text(text)
    report = run_tests([file]).report_text()
    assert "closest: #1: status: expected 'open' (not resolved), got 'resolved'" in report
    assert "exact: tickets not expected" in report


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


HEAD = """config: {config}
tick: 2s
fixtures:
  registry: {{json_file: {fixtures}/registry_all_up.json}}
  over_limit: {{value: []}}
  ready: {{json_file: {fixtures}/ready_all_200.json}}
  node_metrics: {{json_file: {fixtures}/node_metrics_healthy.json}}
  redis_ping: {{value: PONG}}
  redis_memory: {{json_file: {fixtures}/redis_memory_roomy.json}}
"""


def _head(tmp_path: Path) -> str:
    return HEAD.format(
        config=ROOT / "configs" / "ratelimiter.yaml", fixtures=ROOT / "subjects" / "ratelimiter" / "tests" / "fixtures"
    )


def test_strict_loading_reports_every_mistake_with_its_place(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "t.yaml",
        _head(tmp_path)
        + """  redis_stats: {value: {evicted_keys: 0}}
  no_such_observation: "1 2 3"
cases:
  - name: one
    at: 3s
    expect:
      invariants: {node_heartbeat: ok, no_such_invariant: firing}
      observation_errors: {nope: true}
      not_actions: [launch_missiles]
      counters: {tickets_openned_total: 1}
""",
    )
    problems = validate_test_file(file)
    text = "\n".join(p.as_text() for p in problems)
    assert "there is no observation 'no_such_observation'" in text
    assert "3s is not a tick: ticks are every 2s" in text
    assert "there is no invariant 'no_such_invariant'" in text
    assert "there is no observation 'nope'" in text
    assert "there is no action 'launch_missiles'" in text
    assert "there is no counter 'opctl_tickets_openned_total'" in text
    lines = {p.message.split(";")[0]: p.line for p in problems}
    assert lines["there is no observation 'no_such_observation' in the config"] == 11
    assert lines["3s is not a tick: ticks are every 2s from the start"] == 14
    result = run_tests([file])
    assert result.exit_code == 2
    assert f"{file}:14:" in result.report_text()


def test_missing_fixture_unused_step_and_short_series_are_errors(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "t.yaml",
        _head(tmp_path).replace("  redis_ping: {value: PONG}\n", "")
        + """  redis_stats:
    - {from: 0s, value: {evicted_keys: 0}}
    - {from: 1m, value: {evicted_keys: 5}}
cases:
  - name: one
    at: 4s
    expect: {invariants: {node_heartbeat: ok}}
""",
    )
    messages = [p.message for p in validate_test_file(file)]
    assert any("no fixture for observation(s) redis_ping" in m for m in messages), messages
    assert any("the step from 1m is never used: the last case is at 4s" in m for m in messages), messages
    file2 = _write(tmp_path / "t2.yaml", _head(tmp_path) + "  redis_stats: {value: {evicted_keys: 0}}\ncases:\n  - {name: one, at: 4s, expect: {}}\n")
    file2.write_text(file2.read_text().replace("  redis_ping: {value: PONG}", '  redis_ping: "1 2"'))
    messages = [p.message for p in validate_test_file(file2)]
    assert any("the series has 2 values (ticks 0..1) but the cases run to tick 2" in m for m in messages), messages


def test_fixture_values_must_fit_the_declared_shape(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "t.yaml",
        _head(tmp_path).replace(
            "  registry: {json_file", '  registry: {value: [{id: n1, state: sideways}]}\n  _old: {json_file'
        ).replace("  _old: {json_file", "#")
        + "  redis_stats: {value: {evicted_keys: 0}}\ncases:\n  - {name: one, at: 0s, expect: {}}\n",
    )
    messages = [p.message for p in validate_test_file(file)]
    assert any("does not match the observation's shape" in m and "[0]" in m for m in messages), messages


def test_unknown_keys_in_a_case_are_located(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "t.yaml",
        _head(tmp_path) + "  redis_stats: {value: {evicted_keys: 0}}\ncases:\n  - name: one\n    at: 0s\n    expect: {invariant: {node_heartbeat: ok}}\n",
    )
    problems = validate_test_file(file)
    assert [(p.line, p.message) for p in problems] == [
        (14, "unknown key 'invariant'; allowed keys here: invariants, tickets, exact, observation_errors, counters, prompts, actions, not_actions")
    ]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run_tests([tmp_path / "missing.yaml"]).exit_code == 2
    assert "no test files here" in run_tests([tmp_path]).report_text()
    config_only = ROOT / "configs" / "ratelimiter.yaml"
    assert "is not a test file" in run_tests([config_only]).report_text()
    bad_regex = run_tests([SUITES[0]], run_regex="(")
    assert bad_regex.exit_code == 2 and "not a regular expression" in bad_regex.report_text()


def test_run_regex_selects_cases_and_junit_is_written(tmp_path: Path) -> None:
    junit = tmp_path / "out.xml"
    result = run_tests([SUITES[0]], run_regex="^fires after [46]s", junit=junit)
    assert result.exit_code == 0, result.report_text()
    assert [r.name for r in result.results] == ["fires after 4s and opens one ticket", "fires after 6s on n3 only"]
    root = ET.parse(junit).getroot()
    assert root.get("tests") == "2" and root.get("failures") == "0"
    assert {s.get("name").rsplit("/", 1)[-1] for s in root.iter("testsuite")} == {"node_heartbeat.yaml", "policy_version.yaml"}


def test_junit_records_failures(tmp_path: Path) -> None:
    config, tests = copy_subject(tmp_path, "ratelimiter")
    config.write_text(config.read_text().replace("for: 4s\n    keep_firing_for: 4s", "for: 2s\n    keep_firing_for: 4s", 1))
    junit = tmp_path / "out.xml"
    result = run_tests([tests / "node_heartbeat.yaml"], junit=junit)
    assert result.exit_code == 1
    failures = list(ET.parse(junit).getroot().iter("failure"))
    assert failures and "expected pending, got firing" in failures[0].get("message", "")


def test_cases_can_expect_error_and_unknown(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.yaml", """\
version: 1
subject: {name: shares}
targets: {api: {url: "http://127.0.0.1:9"}}
observations:
  shares:
    http: {target: api, path: /shares}
    shape:
      type: array
      items: {type: object, required: [id, used, quota], properties: {id: {type: string}, used: {type: integer}, quota: {type: integer}}}
  ping:
    http: {target: api, path: /ping}
    shape: {type: object, required: [up], properties: {up: {type: boolean}}}
invariants:
  - name: under_quota
    for_each: shares
    key: item.id
    expr: 100 * item.used / item.quota < 90
  - name: api_up
    expr: ping.up
""")
    file = _write(tmp_path / "t.yaml", f"""\
config: {config}
tick: 2s
fixtures:
  shares:
    - {{from: 0s, value: [{{id: a, used: 1, quota: 10}}, {{id: b, used: 1, quota: 0}}]}}
  ping:
    - {{from: 0s, value: {{up: true}}}}
    - {{from: 2s, error: connection refused}}
cases:
  - name: a quota of zero cannot be evaluated; the other share is judged
    at: 0s
    expect:
      invariants: {{under_quota: {{a: ok, b: error}}, api_up: ok}}
  - name: a failed observation leaves nothing to judge
    at: 2s
    expect:
      invariants: {{under_quota: error, api_up: unknown}}
  - name: a wrong expectation fails
    at: 2s
    expect:
      invariants: {{under_quota: {{a: error}}, api_up: error}}
""")
    result = run_tests([file])
    report = result.report_text()
    assert result.exit_code == 1, report
    assert "a wrong expectation fails" in report
    assert "invariants.under_quota['a']: expected error, got ok" in report
    assert "invariants.api_up: expected an entity in state error, got none" in report
    assert report.count("FAIL") == 1, report

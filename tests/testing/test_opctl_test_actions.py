"""`opctl test` with the acting stage: action assertions (proposed / awaiting approval / executed
with the recorded request / refused with gate and reason), recorded diagnoses, modes and
approvals in a case's `then:`, and the guarantee that nothing is sent anywhere."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config.validate import load_config
from engine.testing import run_tests, validate_test_file
from engine.testing.diagnoses import REPLAY_FILE, offline_config, replay_entries
from engine.testing.expect import _value_differences
from engine.testing.model import RecordedDiagnosis
from tests.testing.subject_copy import copy_subject

ROOT = Path(__file__).resolve().parents[2]
SUBMISSION = {
    "summary": "s", "root_cause": "r", "confidence": 0.5, "evidence": [], "alternatives_considered": [],
    "recommended_actions": [{"action": "reset_key", "params": {"policy": "api", "key": "user-7"}, "reason": "x"}],
}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


# --------------------------------------------------------------------------- readable diffs


def test_a_wrong_request_fails_with_the_closest_action_and_the_actual_list(tmp_path: Path) -> None:
    _, tests = copy_subject(tmp_path, "ratelimiter")
    file = tests / "actions.yaml"
    _edit(file, "request: {method: DELETE, path: /v1/nodes/n2, target: api}", "request: {method: DELETE, path: /v1/nodes/n9, target: api}")
    result = run_tests([file])
    report = result.report_text()
    assert result.exit_code == 1, report
    assert ":: in execute mode the low-risk actions run, the ones that require approval wait (at 12s)" in report
    assert "actions[0]: no action matches {action: 'deregister_node', status: 'executed'" in report
    assert "closest: deregister_node (ticket #" in report
    assert "request.path: expected '/v1/nodes/n9', got '/v1/nodes/n2'" in report
    assert "actual actions:" in report and "deregister_node executed params={'node_id': 'n2'}" in report
    assert "request='DELETE /v1/nodes/n2'" in report
    assert "Traceback" not in report
    # the other cases of the file still pass
    assert sum(r.passed for r in result.results) == 3


def test_a_guard_that_lets_everything_through_fails_the_refused_suite(tmp_path: Path) -> None:
    config, tests = copy_subject(tmp_path, "ratelimiter")
    _edit(config, 'when: registry.exists(n, n.id == params.node_id && n.state == "down")',
          'when: registry.exists(n, n.id == params.node_id && n.state != "up")')
    report = run_tests([tests / "refused.yaml"]).report_text()
    assert "FAIL" in report and ":: guards refuse on fresh observations and say why; the tickets are escalated (at 8s)" in report
    assert "status: expected 'refused', got 'executed'" in report
    assert "gate: expected 'guard', got None" in report
    assert "status: expected 'escalated', got 'verifying'" in report


def test_observe_mode_proposes_and_not_actions_fails_when_something_was_proposed(tmp_path: Path) -> None:
    _, tests = copy_subject(tmp_path, "ratelimiter")
    file = tests / "actions.yaml"
    _edit(file, "    expect: {actions: [], tickets: []}\n", "    expect: {actions: [], tickets: []}\n  - name: extra\n    at: 10s\n    expect: {not_actions: [reset_key, set_policy]}\n")
    report = run_tests([file]).report_text()
    assert "not_actions: reset_key was proposed (proposed); actual actions:" in report
    assert "not_actions: set_policy was proposed (proposed)" in report


def test_exact_params_refuse_missing_and_extra_params(tmp_path: Path) -> None:
    _, tests = copy_subject(tmp_path, "ratelimiter")
    file = tests / "actions.yaml"
    _edit(file, "params: {name: api, limit: 100, window_ms: 1000, algorithm: gcra, failure_mode: closed}}",
          "params: {name: api, limit: 100, window_ms: 1000, burst: 5}}")
    report = run_tests([file]).report_text()
    assert "params.burst: expected 5, got nothing" in report
    assert "params.algorithm: not expected, got 'gcra'" in report


# --------------------------------------------------------------------------- then: approve / mode


def test_approving_an_action_that_does_not_wait_fails_the_case(tmp_path: Path) -> None:
    _, tests = copy_subject(tmp_path, "ratelimiter")
    file = tests / "actions.yaml"
    _edit(file, "then: {mode: execute}", "then: {mode: execute, approve: [set_policy]}")
    result = run_tests([file])
    failed = {r.name: r.failures for r in result.results if not r.passed}
    assert list(failed) == ["observe mode records proposals and runs nothing"], result.report_text()
    assert "then.approve: no proposal of set_policy awaits approval; proposals so far:" in failed[next(iter(failed))][0]
    assert "set_policy (proposed)" in failed[next(iter(failed))][0]


def test_without_approval_the_proposal_keeps_waiting(tmp_path: Path) -> None:
    _, tests = copy_subject(tmp_path, "tikv")
    file = tests / "actions.yaml"
    _edit(file, "    then: {approve: [set_store_offline]}\n", "")
    report = run_tests([file]).report_text()
    assert ":: approved, set_store_offline runs on the next tick (at 14s)" in report
    assert "status: expected 'executed', got 'awaiting_approval'" in report


def test_mistakes_in_action_assertions_are_located(tmp_path: Path) -> None:
    file = tmp_path / "t.yaml"
    fixtures = ROOT / "subjects" / "ratelimiter" / "tests" / "fixtures"
    file.write_text(
        f"""config: {ROOT / "configs" / "ratelimiter.yaml"}
fixtures:
  registry: {{json_file: {fixtures}/registry_all_up.json}}
  over_limit: {{value: []}}
  ready: {{json_file: {fixtures}/ready_all_200.json}}
  node_metrics: {{json_file: {fixtures}/node_metrics_healthy.json}}
  redis_ping: {{value: PONG}}
  redis_memory: {{json_file: {fixtures}/redis_memory_roomy.json}}
  redis_stats: {{value: {{evicted_keys: 0}}}}
cases:
  - name: one
    at: 0s
    expect:
      actions:
        - {{action: reset_key, gate: moat}}
        - {{action: reset_key, status: proposed, request: {{verb: GET}}}}
    then: {{approve: [launch_missiles], mode: chaos}}
"""
    )
    problems = validate_test_file(file)
    text = "\n".join(p.as_text() for p in problems)
    assert "'mode' must be one of 'observe', 'approve' or 'execute' (got 'chaos')" in text, text
    file.write_text(file.read_text().replace(", mode: chaos", ""))
    problems = validate_test_file(file)
    found = {p.message.split(";")[0]: p.line for p in problems}
    assert found["there is no gate 'moat'"] == 15, found
    assert found["a request has no field 'verb'"] == 16, found
    assert found["a proposed action sends no request"] == 16, found
    assert found["there is no action 'launch_missiles' in the config"] == 17, found
    assert run_tests([file]).exit_code == 2


# --------------------------------------------------------------------------- recorded diagnoses


def test_recorded_diagnoses_become_a_replay_file_and_the_runbook_answers_otherwise(tmp_path: Path) -> None:
    loaded = load_config(ROOT / "configs" / "ratelimiter.yaml")
    assert loaded.config.diagnosis.provider == "auto"
    assert offline_config(loaded, [], tmp_path).config.diagnosis.provider == "runbook"
    recorded = [
        RecordedDiagnosis(invariant="no_over_admission", key="api/user-7", model="m", diagnosis=SUBMISSION),
        RecordedDiagnosis(invariant="node_heartbeat", diagnosis=SUBMISSION),
    ]
    replay = offline_config(loaded, recorded, tmp_path)
    assert replay.config.diagnosis.provider == "replay"
    assert replay.resolve(replay.config.diagnosis.replay_file or "") == (tmp_path / REPLAY_FILE).resolve()
    assert json.loads((tmp_path / REPLAY_FILE).read_text()) == replay_entries(recorded) == [
        {"match": {"invariant": "no_over_admission", "key": "api/user-7"}, "diagnosis": SUBMISSION, "model": "m"},
        {"match": {"invariant": "node_heartbeat"}, "diagnosis": SUBMISSION},
    ]
    assert loaded.config.diagnosis.provider == "auto"  # the loaded config itself is unchanged


def test_a_recording_for_another_key_leaves_the_ticket_to_the_runbook(tmp_path: Path) -> None:
    _, tests = copy_subject(tmp_path, "ratelimiter")
    file = tests / "actions.yaml"
    _edit(file, 'key: "http://127.0.0.1:18081"\n    model:', 'key: "http://127.0.0.1:18082"\n    model:')
    report = run_tests([file]).report_text()
    # check_latency_p99 has no runbook entry: without its recording nothing is proposed for it
    assert "no action matches {action: 'set_policy', status: 'proposed'" in report


# --------------------------------------------------------------------------- nothing is sent


@pytest.fixture
def listening_api() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 that records every request line it receives."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.send_response(204)
            self.end_headers()

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)  # quick shutdown()
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_executed_actions_reach_the_recorder_not_the_targets(
    listening_api: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = listening_api
    for n in (1, 2, 3):
        monkeypatch.setenv(f"RATELIMITER_URL_{n}", url)
    result = run_tests([ROOT / "subjects" / "ratelimiter" / "tests" / "actions.yaml"])
    assert result.exit_code == 0, result.report_text()
    assert seen == []


# --------------------------------------------------------------------------- partial matching


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=10,
)


@given(_json)
def test_every_value_matches_itself_exactly(value: Any) -> None:
    assert _value_differences(value, value, exact=True) == []


@given(st.dictionaries(st.text(max_size=2), _json, min_size=1, max_size=4), st.data())
def test_a_part_of_a_mapping_matches_partially_but_not_exactly(actual: dict[str, Any], data: st.DataObject) -> None:
    keys = data.draw(st.lists(st.sampled_from(sorted(actual)), unique=True, max_size=len(actual) - 1))
    part = {k: actual[k] for k in keys}
    assert _value_differences(part, actual, exact=False) == []
    left_out = sorted(set(actual) - set(keys))
    extra = _value_differences(part, actual, exact=True)
    assert sorted(d.split(": not expected")[0] for d in extra) == sorted(f".{k}" for k in left_out)


@given(st.integers(0, 1))
def test_booleans_are_not_numbers(number: int) -> None:
    assert _value_differences(bool(number), number, exact=False) != []

"""Eval files: the shipped ones are valid, their schema and reference are fresh, and bad input
exits 1 naming file:line:col, through `opctl validate` and `opctl eval` alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval_support import RATELIMITER, ROOT, node_down_case, opctl, write_evals
from engine.evals.docs import DOCS_FILE, SCHEMA_FILE, eval_schema_text, render_eval_reference, shipped_eval_files
from engine.filekinds import validate_paths


def test_the_shipped_eval_files_are_valid_and_cover_every_lab_scenario() -> None:
    files = shipped_eval_files()
    assert validate_paths(files, env={}) == []
    text = "\n".join(f.read_text() for f in files)
    for lab in ("ratelimiter", "tikv"):
        import yaml

        for scenario in yaml.safe_load((ROOT / "subjects" / lab / "lab.yaml").read_text())["scenarios"]:
            assert f"live: {{scenario: {scenario['name']}}}" in text, scenario["name"]


def test_opctl_validate_accepts_eval_files_beside_configs() -> None:
    result = opctl("validate", str(ROOT / "subjects"), str(ROOT / "examples"), str(ROOT / "configs"))
    assert result.exit_code == 0, result.output


def test_the_eval_schema_and_reference_are_fresh() -> None:
    assert SCHEMA_FILE.read_text() == eval_schema_text(), "stale: run `python -m engine.evals.docs`"
    assert DOCS_FILE.read_text() == render_eval_reference(shipped_eval_files()), "stale: run `python -m engine.evals.docs`"


def test_shipped_eval_files_point_editors_at_the_schema() -> None:
    for file in shipped_eval_files():
        assert file.read_text().splitlines()[0] == "# yaml-language-server: $schema=../../../schemas/opctl-eval.schema.json", file


def _live(scenario: str, **expect: object) -> dict[str, object]:
    return {"name": "live_one", "live": {"scenario": scenario}, "expect": {"root_cause": [{"any": ["node2"]}], **expect}}


@pytest.mark.parametrize(
    ("case", "message", "path"),
    [
        (_live("no_such_scenario"), "the lab has no scenario 'no_such_scenario'; scenarios: kill_node", "evals.0.live.scenario"),
        ({**node_down_case(), "frozen": {**node_down_case()["frozen"], "ticket": {"invariant": "nope", "key": "n2"}}},
         "there is no invariant 'nope' in the config", "evals.0.frozen.ticket.invariant"),
        (node_down_case(actions=[{"action": "reboot_everything"}]), "there is no action 'reboot_everything'", "evals.0.expect.actions.0.action"),
        (node_down_case(root_cause=[]), "root_cause", "evals.0.expect.root_cause"),
        (node_down_case(root_cause=[{"any": []}]), "any", "evals.0.expect.root_cause.0.any"),
        (node_down_case(must_not=[{"cel": "ticket.id == 1"}]), "'ticket' is not a field of a diagnosis", "evals.0.expect.must_not.0.cel"),
    ],
)
def test_bad_input_exits_1_at_file_line_col(tmp_path: Path, case: dict[str, object], message: str, path: str) -> None:
    file = write_evals(tmp_path, [case])
    for command in (("validate", str(file)), ("eval", str(file))):
        result = opctl(*command)
        assert result.exit_code == 1, result.output
        first = result.output.splitlines()[0]
        location, _, rest = first.partition(": error: ")
        name, line, column = location.rsplit(":", 2)
        assert name == str(file) and int(line) > 1 and int(column) >= 1, first
        assert message in rest and rest.endswith(f"(at {path})"), first


def test_eval_usage_errors_exit_2(tmp_path: Path) -> None:
    file = write_evals(tmp_path, [node_down_case()])
    assert opctl("eval", str(RATELIMITER)).exit_code == 2  # a config, not an eval file
    assert opctl("eval", str(file), "--provider", "replay").exit_code == 2  # replay needs --from
    missing_key = opctl("eval", str(file), "--provider", "claude")
    assert missing_key.exit_code == 2 and "To measure Claude live: ANTHROPIC_API_KEY=<key> opctl eval" in missing_key.output
    assert opctl("eval", str(file), "--run", "(").exit_code == 2

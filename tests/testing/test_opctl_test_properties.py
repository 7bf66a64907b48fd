"""`opctl test --property`: shipped properties hold; a planted bug yields a minimal counterexample;
the shape generator only produces shape-valid data and refuses what it cannot honour."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings

from engine.errors import ConfigError
from engine.testing import run_tests
from engine.testing.shapes import strategy_for

ROOT = Path(__file__).resolve().parents[2]
PROPERTIES = ROOT / "subjects" / "ratelimiter" / "tests" / "properties.yaml"
REGISTRY_SHAPE = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id", "state", "policy_version"],
        "properties": {
            "id": {"type": "string", "pattern": "^n[0-9]$"},
            "state": {"enum": ["up", "stale", "down"]},
            "policy_version": {"type": "integer", "minimum": 0, "exclusiveMaximum": 9},
            "load": {"type": ["number", "null"], "minimum": 0.5, "maximum": 2},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "uniqueItems": True, "maxItems": 3},
            "extra": {"anyOf": [{"const": 1}, {"type": "boolean"}]},
        },
        "additionalProperties": False,
    },
    "minItems": 1,
}


def test_shipped_properties_hold() -> None:
    result = run_tests([PROPERTIES], property_mode=True)
    assert result.exit_code == 0, result.report_text()
    assert [r.kind for r in result.results] == ["property", "property"]


def test_properties_are_skipped_without_the_flag() -> None:
    result = run_tests([PROPERTIES])
    assert result.results == () and "2 property test(s) not run; add --property" in result.report_text()


def test_a_planted_bug_is_found_and_shrunk_to_a_minimal_counterexample(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "ratelimiter.yaml"
    shutil.copy(ROOT / ".opctl-root", tmp_path)  # configs/ names ../subjects/: one project root
    shutil.copy(ROOT / "configs" / "ratelimiter.yaml", config)
    shutil.copytree(ROOT / "subjects" / "ratelimiter", tmp_path / "subjects" / "ratelimiter")
    # the bug: a `stale` node counts as healthy
    config.write_text(config.read_text().replace('expr: item.state == "up"\n', 'expr: item.state != "down"\n'))
    result = run_tests([tmp_path / "subjects" / "ratelimiter" / "tests" / "properties.yaml"], property_mode=True)
    report = result.report_text()
    assert result.exit_code == 1, report
    assert "node_heartbeat does not fire, but fires_iff is true" in report
    failed = result.failed[0].failures[0]
    block = failed.split("minimal counterexample (observations):\n", 1)[1].split("    entity states")[0]
    counterexample = json.loads("\n".join(line.strip() for line in block.splitlines()))
    # minimal: one node, every field at its simplest, the state the bug misjudges
    assert counterexample == {
        "registry": [{"address": "", "decisions": 0, "failure_mode_decisions": 0, "id": "", "policy_version": 0, "state": "stale"}]
    }
    assert "entity states: ''=ok" in report
    # the other property of the file still holds
    assert sum(r.passed for r in result.results) == 1


def test_an_invariant_that_errors_on_valid_data_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "ratelimiter.yaml"
    shutil.copy(ROOT / ".opctl-root", tmp_path)  # configs/ names ../subjects/: one project root
    shutil.copy(ROOT / "configs" / "ratelimiter.yaml", config)
    shutil.copytree(ROOT / "subjects" / "ratelimiter", tmp_path / "subjects" / "ratelimiter")
    # well-typed (the checker passes it), but it divides by zero on every node that made no decision
    config.write_text(config.read_text().replace(
        'expr: item.state == "up"\n', 'expr: item.state == "up" && 100 / item.decisions >= 0\n'))
    result = run_tests([tmp_path / "subjects" / "ratelimiter" / "tests" / "properties.yaml"], property_mode=True, run_regex="heartbeat")
    assert result.exit_code == 1
    assert "the invariant could not be evaluated" in result.report_text()


@settings(max_examples=150, deadline=None)
@given(strategy_for(REGISTRY_SHAPE))
def test_generated_values_fit_their_shape(value: object) -> None:
    jsonschema.validate(value, REGISTRY_SHAPE)


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"type": "array", "items": {"type": "string", "format": "uuid", "contains": {}}}, "shape.items: 'contains' is not supported"),
        ({"type": "object", "required": ["a"]}, "'a' has no schema"),
        ({"type": "thing"}, "shape.type"),
    ],
)
def test_unsupported_shapes_are_refused_by_name(schema: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        strategy_for(schema)

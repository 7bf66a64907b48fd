"""The shipped baselines, replayed offline: a prompt, tool or engine change that lowers any
case's replayed score fails here. `tests/evals/baselines/<run>/report.jsonl` holds the figures of the run
(one JSON line per case, then the totals), made by the commands in tests/evals/baselines/README.md.

A replayed claude exchange only answers the request it recorded: a changed prompt makes the
recording stale, which scores 0 and fails this test until the case is re-recorded (with an API
key: `opctl eval ... --provider claude --record DIR`; the shipped claude recordings are
hand-authored, see engine/evals/authored.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_support import BASELINES, ROOT
from engine.evals.runner import run_eval
from engine.evals.runs import Settings

RUNS = sorted(p.parent.name for p in BASELINES.glob("*/report.jsonl"))


def baseline(run: str) -> dict[str, dict[str, object]]:
    lines = [json.loads(line) for line in (BASELINES / run / "report.jsonl").read_text().splitlines() if line.strip()]
    return {line["case"]: line for line in lines[:-1]}


def test_there_are_baselines_for_the_runbook_and_claude() -> None:
    assert RUNS == ["claude-sonnet-4-6", "runbook"]


@pytest.mark.parametrize("run", RUNS)
def test_replayed_scores_do_not_drop_below_the_baseline(run: str) -> None:
    result = run_eval([ROOT / "subjects", ROOT / "examples"], Settings(provider="replay", replay_from=BASELINES / run))
    assert not result.problems and result.report is not None, result.problems
    expected = baseline(run)
    got = {c.ident: c.as_json() for c in result.report.cases}
    assert sorted(got) == sorted(expected), "cases were added or removed: re-make the baseline (tests/evals/baselines/README.md)"
    drops = [
        f"{case}: accuracy {got[case]['accuracy']} < {want['accuracy']}, action accuracy {got[case]['action_accuracy']} "
        f"(baseline {want['action_accuracy']}); errors: {got[case]['errors']}"
        for case, want in expected.items()
        if got[case]["accuracy"] < want["accuracy"] or got[case]["action_accuracy"] < want["action_accuracy"]  # type: ignore[operator]
    ]
    assert not drops, "replayed scores dropped:\n" + "\n".join(drops)


def test_the_runbook_baseline_is_what_the_runbook_does_now_on_frozen_cases() -> None:
    result = run_eval([ROOT / "subjects", ROOT / "examples"], Settings(provider="runbook"), run_regex="/frozen/")
    assert result.report is not None
    expected = baseline("runbook")
    for case in result.report.cases:
        assert case.as_json()["accuracy"] == expected[case.ident]["accuracy"], case.ident

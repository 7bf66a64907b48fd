"""Record -> replay through the REAL anthropic client: a scripted Messages API answers while
recording (engine.evals.authored), the replay must give the same figures byte for byte, a changed
request makes the recording stale, and a malformed recording is refused at file:line:col."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from eval_support import json_lines, node_down_case, opctl, write_evals
from engine.evals.authored import authored_settings
from engine.evals.runner import run_eval

SUBMIT = {"summary": "n2 is down.", "root_cause": "n2 crashed and stopped heartbeating.", "confidence": 0.9,
          "evidence": ["registry: n2 down"], "alternatives_considered": [],
          "recommended_actions": [{"action": "deregister_node", "params": {"node_id": "n2"}, "reason": "dead"}]}
MEASURED = ("accuracy", "action_accuracy", "latency_mean_s", "latency_p95_s", "input_tokens", "output_tokens", "cost_usd",
            "tool_calls", "agreement", "errors", "cases", "runs", "model", "by")


def record(tmp_path: Path, evals: Path, repeat: int = 1) -> tuple[Path, dict[str, object]]:
    answers = tmp_path / "recorded" / "authored.yaml"
    answers.parent.mkdir()
    turns = [[{"text": "Looking again."}, {"observe": "registry"}], [{"submit": SUBMIT}]]
    answers.write_text(yaml.safe_dump({"model": "claude-sonnet-4-6", "answers": {"ratelimiter/cases/node_down": turns}}))
    settings = authored_settings(answers, answers.parent)
    settings.repeat = repeat
    result = run_eval([evals], settings)
    assert result.report is not None and not result.problems
    return answers.parent, result.report.totals()


def test_a_recorded_eval_replays_byte_for_byte(tmp_path: Path) -> None:
    evals = write_evals(tmp_path, [node_down_case()])
    directory, recorded = record(tmp_path, evals, repeat=2)
    files = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*.json"))
    assert files == ["ratelimiter/cases/node_down/1.json", "ratelimiter/cases/node_down/2.json"]
    saved = json.loads((directory / files[0]).read_text())
    assert saved["origin"]["kind"] == "hand-authored" and "NOT A MEASUREMENT" in saved["origin"]["note"]
    assert [e["request"]["tool_choice"] for e in saved["exchanges"]] == [{"type": "any"}, {"type": "any"}]
    assert saved["observations"][0]["name"] == "registry"  # the tool call re-ran the observation
    first = opctl("eval", str(evals), "--provider", "replay", "--from", str(directory), "--repeat", "2", "--json")
    second = opctl("eval", str(evals), "--provider", "replay", "--from", str(directory), "--repeat", "2", "--json")
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout  # replays are deterministic
    *cases, totals = json_lines(first.stdout)
    assert {k: totals[k] for k in MEASURED} == {k: recorded[k] for k in MEASURED}
    assert totals["provider"] == "replay" and totals["recordings"] == ["hand-authored"]
    assert cases[0]["accuracy"] == 1.0 and cases[0]["tool_calls"] == 2 and cases[0]["agreement"] == 1.0


def test_a_changed_request_makes_the_recording_stale(tmp_path: Path) -> None:
    evals = write_evals(tmp_path, [node_down_case()])
    directory, _ = record(tmp_path, evals)
    path = directory / "ratelimiter" / "cases" / "node_down" / "1.json"
    saved = json.loads(path.read_text())
    saved["exchanges"][0]["request"]["system"] += " (an older prompt)"
    path.write_text(json.dumps(saved))
    result = opctl("eval", str(evals), "--provider", "replay", "--from", str(directory), "--json")
    assert result.exit_code == 0, result.output
    case, totals = json_lines(result.stdout)
    assert totals["accuracy"] == 0.0 and totals["errors"] == 1
    assert "the recording is stale: call 1 differs from the recording at system" in case["errors"][0]


def test_a_missing_recording_is_an_error_of_that_case(tmp_path: Path) -> None:
    evals = write_evals(tmp_path, [node_down_case()])
    (tmp_path / "empty").mkdir()
    result = opctl("eval", str(evals), "--provider", "replay", "--from", str(tmp_path / "empty"), "--json")
    case, totals = json_lines(result.stdout)
    assert totals["accuracy"] == 0.0 and "no recording" in case["errors"][0]


@pytest.mark.parametrize(
    ("mangle", "where"),
    [
        (lambda text: text.replace('"provider": "claude"', '"provider": "claude",,'), "provider-line"),
        (lambda text: text.replace('"latency_s"', '"latency"', 1), "unknown key"),
    ],
)
def test_a_malformed_recording_exits_1_at_file_line_col(tmp_path: Path, mangle: object, where: str) -> None:
    evals = write_evals(tmp_path, [node_down_case()])
    directory, _ = record(tmp_path, evals)
    path = directory / "ratelimiter" / "cases" / "node_down" / "1.json"
    original = path.read_text()
    if where == "provider-line":  # the JSON error is on the line of the mangled key
        line = next(i for i, text in enumerate(original.splitlines(), 1) if '"provider": "claude"' in text)
        where = f":{line}:"
    path.write_text(mangle(original))  # type: ignore[operator]
    result = opctl("eval", str(evals), "--provider", "replay", "--from", str(directory))
    assert result.exit_code == 1
    first = result.output.splitlines()[0]
    assert first.startswith(f"{path}:") and where in first, first


def test_tokens_and_cost_add_up_per_exchange_and_follow_the_price_table(tmp_path: Path, allow_outside: None) -> None:
    config = (Path(__file__).resolve().parents[2] / "configs" / "ratelimiter.yaml").read_text()
    priced = tmp_path / "priced.yaml"
    base = Path(__file__).resolve().parents[2] / "configs"
    text = config.replace("../subjects/", f"{base.parent}/subjects/").replace("../.opctl/", f"{tmp_path}/.opctl/")
    text = text.replace("  max_tool_turns: 6\n", "  max_tool_turns: 6\n  prices:\n    claude-sonnet-4-6: {input_usd_per_mtok: 2.0, output_usd_per_mtok: 10.0}\n")
    priced.write_text(text)
    evals = write_evals(tmp_path, [node_down_case()], config=priced)
    directory, totals = record(tmp_path, evals)
    saved = json.loads((directory / "ratelimiter" / "cases" / "node_down" / "1.json").read_text())
    usage = [e["response"]["body"]["usage"] for e in saved["exchanges"]]
    inputs, outputs = sum(u["input_tokens"] for u in usage), sum(u["output_tokens"] for u in usage)
    assert (totals["input_tokens"], totals["output_tokens"]) == (inputs, outputs)
    assert totals["cost_usd"] == round((inputs * 2.0 + outputs * 10.0) / 1_000_000, 6)
    assert totals["tool_calls"] == 1


def test_the_judge_is_reported_apart_and_replays(tmp_path: Path) -> None:
    evals = write_evals(tmp_path, [node_down_case(root_cause=[{"any": ["a phrase no answer has"]}])])
    answers = tmp_path / "judged" / "authored.yaml"
    answers.parent.mkdir()
    answers.write_text(yaml.safe_dump({
        "model": "claude-sonnet-4-6",
        "answers": {"ratelimiter/cases/node_down": [[{"submit": SUBMIT}]]},
        "verdicts": {"ratelimiter/cases/node_down": {"correct": True, "score": 0.9, "reason": "same cause"}},
    }))
    settings = authored_settings(answers, answers.parent)
    settings.judge_model = "claude-haiku-4-5"
    result = run_eval([evals], settings)
    assert result.report is not None
    totals = result.report.totals()
    # the phrase list is too rigid for this answer; the judge accepts it; neither changes the other
    assert totals["accuracy"] == 0.0
    assert totals["judge"]["model"] == "claude-haiku-4-5" and totals["judge"]["accuracy"] == 1.0
    assert totals["judge"]["score_mean"] == 0.9 and totals["judge"]["input_tokens"] > 0
    sent = json.loads((answers.parent / "ratelimiter" / "cases" / "node_down" / "1.json").read_text())["judge"]["exchanges"][0]["request"]
    assert sent["tool_choice"] == {"type": "tool", "name": "submit_verdict"} and "n2 crashed" in sent["messages"][0]["content"]
    replayed = opctl("eval", str(evals), "--provider", "replay", "--from", str(answers.parent), "--judge", "claude-haiku-4-5", "--json")
    assert json_lines(replayed.stdout)[-1]["judge"] == totals["judge"]

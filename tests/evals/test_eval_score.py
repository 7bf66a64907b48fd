"""The deterministic scorer: each fact kind, forbidden facts, and actions through the real gate."""

from __future__ import annotations

from pathlib import Path

from eval_support import healthy_fixtures, json_lines, node_down_case, opctl, write_evals, FIXTURES
from engine.diagnose.types import Submission
from engine.evals.model import Expect, Fact
from engine.evals.score import GateOutcome, fact_result, score


def submission(**changes: object) -> Submission:
    data: dict[str, object] = {
        "summary": "Node n2 is down.",
        "root_cause": "The process of n2 crashed; it stopped heartbeating.",
        "confidence": 0.8,
        "evidence": ["registry says n2 down", "redis answers PING"],
        "alternatives_considered": [{"hypothesis": "Redis outage", "why_rejected": "PING answers"}],
        "recommended_actions": [{"action": "deregister_node", "params": {"node_id": "n2"}, "reason": "dead node"}],
    }
    data.update(changes)
    return Submission.model_validate(data)


def test_phrases_match_whole_words_case_and_space_insensitively() -> None:
    assert fact_result(Fact(any=["N2"]), submission()).holds
    assert fact_result(Fact(any=["stopped   HEARTBEATING"]), submission()).holds
    assert not fact_result(Fact(any=["n2"]), submission(summary="node n20 is down", root_cause="n20 crashed")).holds
    assert not fact_result(Fact(any=["crash"]), submission()).holds  # "crashed" is another word
    assert fact_result(Fact(any=["disconnected", "crashed"]), submission()).holds  # any phrasing


def test_phrases_are_searched_only_in_the_chosen_fields() -> None:
    # the alternatives mention Redis: a forbidden "Redis outage" in the root cause is not found there
    assert not fact_result(Fact(any=["redis outage"]), submission()).holds
    assert fact_result(Fact.model_validate({"any": ["redis outage"], "in": ["alternatives"]}), submission()).holds
    assert fact_result(Fact.model_validate({"any": ["answers PING"], "in": ["evidence"]}), submission()).holds
    assert fact_result(Fact.model_validate({"any": ["dead node"], "in": ["reasons"]}), submission()).holds


def test_cel_facts_see_the_structured_fields() -> None:
    wanted = Fact(cel='actions.exists(a, a.action == "deregister_node" && a.params.node_id == "n2") && confidence >= 0.5')
    assert fact_result(wanted, submission()).holds
    assert not fact_result(wanted, submission(recommended_actions=[])).holds
    assert fact_result(Fact(cel="size(alternatives) == 1 && evidence.exists(e, e.contains('PING'))"), submission()).holds


def test_a_cel_fact_that_fails_or_is_not_boolean_does_not_hold_and_says_why() -> None:
    broken = fact_result(Fact(cel="actions[5].action == 'x'"), submission())
    assert not broken.holds and broken.error
    number = fact_result(Fact(cel="confidence"), submission())
    assert not number.holds and "not true or false" in (number.error or "")


def test_a_forbidden_fact_makes_the_run_wrong() -> None:
    expect = Expect.model_validate({"root_cause": [{"any": ["n2"]}], "must_not": [{"any": ["crashed"]}],
                                    "actions": [{"action": "deregister_node"}]})
    gate = [GateOutcome("deregister_node", {"node_id": "n2"})]
    result = score(expect, submission(), gate)
    assert result.violated == ["crashed"] and not result.correct and result.actions_ok


def test_actions_must_be_acceptable_pass_the_gate_and_not_be_missing() -> None:
    expect = Expect.model_validate({"root_cause": [{"any": ["n2"]}], "actions": [{"action": "deregister_node", "params": {"node_id": "n2"}}]})
    assert score(expect, submission(), [GateOutcome("deregister_node", {"node_id": "n2"})]).correct
    refused = score(expect, submission(), [GateOutcome("deregister_node", {"node_id": "n2"}, "guard", "n2 is not down")])
    assert not refused.actions_ok and "refused by the gate (guard)" in refused.action_notes[0]
    wrong_params = score(expect, submission(), [GateOutcome("deregister_node", {"node_id": "n3"})])
    assert not wrong_params.actions_ok
    extra = score(expect, submission(), [GateOutcome("deregister_node", {"node_id": "n2"}), GateOutcome("reset_key", {})])
    assert not extra.actions_ok
    assert not score(expect, submission(), []).actions_ok  # recommending nothing is not acceptable here
    nothing = Expect.model_validate({"root_cause": [{"any": ["n2"]}]})
    assert score(nothing, submission(), []).actions_ok
    assert not score(nothing, submission(), [GateOutcome("deregister_node", {"node_id": "n2"})]).actions_ok
    optional = Expect.model_validate({"root_cause": [{"any": ["n2"]}], "actions": [{"action": "deregister_node"}], "no_action_ok": True})
    assert score(optional, submission(), []).actions_ok
    assert not score(expect, submission(), [GateOutcome("deregister_node", {"node_id": True})]).actions_ok


def test_the_real_gate_refuses_an_action_its_guard_forbids(tmp_path: Path) -> None:
    """n2 is stale, not down: the runbook proposes deregister_node and the real guard refuses it."""
    stale = [{"from": "0s", "json_file": str(FIXTURES / "registry_all_up.json")},
             {"from": "2s", "json_file": str(FIXTURES / "registry_n2_stale.json")}]
    case = node_down_case("stale")
    case["frozen"]["fixtures"] = healthy_fixtures(registry=stale)
    down = node_down_case("down")
    result = opctl("eval", str(write_evals(tmp_path, [case, down])), "--json")
    assert result.exit_code == 0, result.output
    stale_line, down_line, totals = json_lines(result.output)
    assert stale_line["action_accuracy"] == 0.0 and down_line["action_accuracy"] == 1.0
    assert "refused by the gate (guard)" in stale_line["wrong"]["action_notes"][0]
    assert totals["accuracy"] == 0.5 and totals["cases"] == 2
